"""Bad input gives a clear error naming the file / line / utterance; NaN batches are skipped."""

import gzip
import json
import logging
import re

import pytest
import torch

import lm.train
from common.checkpoint import CheckpointError
from common.io import InputError
from lm.data import read_labels, read_nlu, read_text
from lm.train import run
from tests.lm.conftest import INTENTS, tiny_configs


def _write_rows(path, rows):
    with gzip.open(path, "wt") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def _row(uid, text, intent="PlayMusic", slots=None):
    slots = slots if slots is not None else ["O"] * len(text.split())
    return {
        "id": uid,
        "recording_id": uid,
        "start": 0.0,
        "duration": 1.0,
        "text": text,
        "custom": {"intent": intent, "slots": slots},
    }


def test_empty_sentence_in_text_names_line(tmp_path):
    p = tmp_path / "lm.txt"
    p.write_text("hello there\n\nagain\n")
    with pytest.raises(InputError, match=r"lm\.txt:2: empty sentence"):
        read_text(p)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.txt: no such file"):
        read_text(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="no such file"):
        read_nlu(tmp_path / "nope.jsonl.gz", INTENTS, ["O"])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            _row("u-2", "play hey jude", slots=["O", "B-track"]),
            r"bad\.jsonl\.gz:2 \(utterance u-2\): 2 slot labels for 3 words",
        ),
        (
            _row("u-2", "play it", intent="OrderPizza"),
            r"bad\.jsonl\.gz:2 \(utterance u-2\): unknown intent 'OrderPizza'",
        ),
        (_row("u-2", "   "), r"bad\.jsonl\.gz:2 \(utterance u-2\): empty sentence"),
        (
            _row("u-2", "play it", slots=["O", "B-nope"]),
            r"bad\.jsonl\.gz:2 \(utterance u-2\): unknown slot tag 'B-nope'",
        ),
    ],
)
def test_bad_nlu_rows(tmp_path, row, message):
    p = _write_rows(tmp_path / "bad.jsonl.gz", [_row("u-1", "play music"), row])
    with pytest.raises(InputError, match=message):
        read_nlu(p, INTENTS, ["O", "B-track", "I-track"])
    if "empty" not in message:  # text-only reading (LM modes) ignores the labels
        assert read_nlu(p, None, None)[1].intent is None


def test_bad_label_file(tmp_path):
    p = tmp_path / "intents.txt"
    p.write_text("A\nB\nA\n")
    with pytest.raises(InputError, match=r"intents\.txt:3: duplicate label 'A'"):
        read_labels(p)


def test_train_cli_reports_bad_data_file(lm_data, tmp_path, capsys):
    bad = _write_rows(tmp_path / "train.jsonl.gz", [_row("x-1", "play", intent="Nope")])
    with pytest.raises(SystemExit) as e:
        lm.train.main(
            [
                "--preset",
                "tiny",
                "--mode",
                "multitask",
                "--nlu-train",
                str(bad),
                "--exp-dir",
                str(tmp_path / "exp"),
                "--intents",
                str(lm_data / "data/manifests/snips_intents.txt"),
                "--slot-tags",
                str(lm_data / "data/manifests/snips_slot_tags.txt"),
                "--bpe-model",
                str(lm_data / "data/lang_lm/lm_bpe.model"),
            ]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert re.search(
        r"train-lm: error: .*train\.jsonl\.gz:1 \(utterance x-1\): unknown intent", err
    )
    assert "Traceback" not in err


def test_bad_init_checkpoint(lm_data, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    model_cfg, cfg = tiny_configs(lm_data, "finetune-multitask", "badinit", init_from=bad)
    with pytest.raises(CheckpointError, match=r"bad\.pt: cannot load checkpoint"):
        run(model_cfg, cfg)


def test_nan_batches_are_skipped_and_counted(lm_data, pretrained, monkeypatch, caplog):
    real = lm.train.compute_loss
    calls = {"n": 0}

    def flaky(model, batch, weights):
        loss, stats = real(model, batch, weights)
        calls["n"] += 1
        if calls["n"] in (1, 3):
            loss = loss * torch.tensor(float("nan"))
        return loss, stats

    monkeypatch.setattr(lm.train, "compute_loss", flaky)
    model_cfg, cfg = tiny_configs(
        lm_data,
        "finetune-lm",
        "nan",
        init_from=pretrained,
        epochs=1,
        train_text=lm_data / "data/lm/finetune.txt",
        batch_tokens=60,
    )
    with caplog.at_level(logging.WARNING):
        s = run(model_cfg, cfg)
    assert s["nan_skipped"] == 2
    assert "non-finite loss, batch skipped (2 skipped so far)" in caplog.text
    assert s["best_dev"]["ppl"] > 1
