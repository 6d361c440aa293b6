"""pseudo-label-nlu (lm/pseudo_label.py) and the scorer's confidences behind it: batched equals
one-at-a-time, the threshold chosen on dev meets --min-precision, deterministic for a seed,
resumable after a kill with no half-written output, clear errors, train-lm --nlu-extra."""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import pytest
import torch

import lm.pseudo_label as pl
from common.io import InputError, read_jsonl
from lm.config import ModelConfig
from lm.data import read_nlu
from lm.model import MultitaskLM
from lm.pseudo_label import PseudoLabelConfig, choose_threshold, main, pseudo_label, select
from lm.scorer import LMScorer, NluPrediction
from lm.train import run as train_lm
from tests.asr.faults import assert_user_error, run_main
from tests.lm.conftest import INTENTS, NLU_ROWS, TEXT, slot_tags, tiny_configs, write_nlu

SENTS = [
    "play hey jude by the beatles",
    "",
    "what is the weather in paris",
    "xylophone zqxj quux",
    "play",
    "book a table for two in paris tonight please with my friends and family",
    "play hey jude",
]
#: unique sentences (none is a dev sentence of the lm_data fixture)
UNIQUE_TEXT = TEXT + [r[0] for r in NLU_ROWS[:-1]]


class Killed(BaseException):
    """Stands for SIGKILL: nothing after the raise runs, no handler catches it."""


def _cfg(lm_data, ckpt, tmp_path, name: str = "pseudo", **over) -> PseudoLabelConfig:
    fields = dict(
        checkpoint=ckpt,
        text=lm_data / "data/lm/pretrain.txt",
        dev_nlu=lm_data / "data/manifests/snips_nlu_dev.jsonl.gz",
        out=tmp_path / name / "nlu_pseudo.jsonl.gz",
        threshold=0.0,
        batch_size=3,
        chunk_size=4,
    )
    fields.update(over)
    return PseudoLabelConfig(**fields)


def _write_text(path, lines):
    path.write_text("".join(s + "\n" for s in lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- the scorer


def _random_multitask_scorer(pretrained, slot_context: str, seed: int) -> LMScorer:
    """An LMScorer over a randomly initialised small multitask model (the tokenizer of
    ``pretrained``), batches of 3."""
    tok = LMScorer.from_checkpoint(pretrained).tok
    torch.manual_seed(seed)
    cfg = ModelConfig(embed_dim=32, hidden_dim=48, dropout=0.3, slot_context=slot_context)
    tags = slot_tags()
    model = MultitaskLM(cfg, tok.vocab_size, len(INTENTS), len(tags))
    return LMScorer(model, tok, INTENTS, tags, batch_size=3)


@pytest.mark.parametrize("slot_context", ["bilstm", "sentence"])
def test_predict_nlu_scored_batched_equals_single(pretrained, slot_context):
    scorer = _random_multitask_scorer(pretrained, slot_context, seed=0)
    batched = scorer.predict_nlu_scored(SENTS)
    single = [scorer.predict_nlu_scored([s])[0] for s in SENTS]
    for b, s, sent in zip(batched, single, SENTS, strict=True):
        assert isinstance(b, NluPrediction)
        assert (b.intent, b.tags) == (s.intent, s.tags)
        assert b.intent_prob == pytest.approx(s.intent_prob, abs=1e-6)
        assert b.slot_logprob == pytest.approx(s.slot_logprob, abs=1e-5)
        assert 0 < b.intent_prob <= 1 and b.slot_logprob <= 0
        assert len(b.tags) == len(sent.split())
    assert batched[1].slot_logprob == 0.0  # the empty sentence
    assert scorer.predict_nlu(SENTS) == [(p.intent, p.tags) for p in batched]
    assert scorer.predict_nlu_scored(SENTS) == batched  # deterministic (dropout off)


@pytest.mark.parametrize("slot_context", ["bilstm", "sentence"])
def test_score_and_predict_nlu_is_both_calls_in_one_pass(pretrained, slot_context):
    scorer = _random_multitask_scorer(pretrained, slot_context, seed=1)
    scores, preds = scorer.score_and_predict_nlu(SENTS)
    assert scores == scorer.score(SENTS)  # the same floats
    assert preds == scorer.predict_nlu_scored(SENTS)
    with pytest.raises(RuntimeError, match="no NLU heads"):
        LMScorer.from_checkpoint(pretrained).score_and_predict_nlu(["play"])


def test_predict_nlu_scored_gives_the_rescorers_numbers(multitask_ckpt, pretrained):
    from rescoring.nlu_scores import nlu_scores

    scorer = LMScorer.from_checkpoint(multitask_ckpt, batch_size=2)
    ours = scorer.predict_nlu_scored(SENTS)
    theirs = nlu_scores(scorer, SENTS)
    assert [(p.intent, tuple(p.tags), p.intent_prob, p.slot_logprob) for p in ours] == [
        (s.intent, s.tags, s.intent_conf, s.slot_logp) for s in theirs
    ]
    with pytest.raises(RuntimeError, match="no NLU heads"):
        LMScorer.from_checkpoint(pretrained).predict_nlu_scored(["play"])


# ---------------------------------------------------------------------------- threshold


def test_choose_threshold_lowest_passing_with_ties():
    conf = [0.9, 0.8, 0.8, 0.7, 0.6, 0.5]
    correct = [True, True, False, True, True, False]
    # kept at 0.9: 1/1; 0.8 (ties together): 2/3; 0.7: 3/4; 0.6: 4/5; 0.5: 4/6
    assert choose_threshold(conf, correct, 0.8) == 0.6
    assert choose_threshold(conf, correct, 0.75) == 0.6
    assert choose_threshold(conf, correct, 0.81) == 0.9
    assert choose_threshold(conf, correct, 0.6) == 0.5
    assert choose_threshold(conf, [False] * 6, 0.5) is None
    assert choose_threshold([], [], 0.9) is None


def _fake_scorer(monkeypatch, table: dict[str, NluPrediction], calls: list | None = None):
    """LMScorer.predict_nlu_scored answers from ``table`` (unknown sentences: confidence 0.1)."""

    def fake(self, sentences):
        if calls is not None:
            calls.append(len(sentences))
        n = {s: len(s.split()) for s in sentences}
        return [table.get(s, NluPrediction(INTENTS[0], ["O"] * n[s], 0.1, 0.0)) for s in sentences]

    monkeypatch.setattr(LMScorer, "predict_nlu_scored", fake)


def test_threshold_chosen_on_dev_meets_min_precision(
    lm_data, multitask_ckpt, tmp_path, monkeypatch
):
    dev = write_nlu(tmp_path / "dev.jsonl.gz", NLU_ROWS, "dev")
    wrong = {3, 7, 9}  # cumulative precision by rank: 1 1 1 .75 .8 .83 .86 .75 .78 .7
    table = {}
    for i, (text, intent, slots) in enumerate(NLU_ROWS):
        other = INTENTS[(INTENTS.index(intent) + 1) % len(INTENTS)]
        table[text] = NluPrediction(
            other if i in wrong else intent, slots.split(), 0.95 - 0.05 * i, 0.0
        )
    for j, text in enumerate(TEXT):  # confidence = intent_prob when slot_logprob is 0
        table[text] = NluPrediction(INTENTS[j % 3], ["O"] * len(text.split()), 0.9 - 0.1 * j, 0.0)
    _fake_scorer(monkeypatch, table)
    text = _write_text(tmp_path / "text.txt", TEXT)

    cfg = _cfg(lm_data, multitask_ckpt, tmp_path, dev_nlu=dev, text=text, threshold=None)
    stats = pseudo_label(dataclasses.replace(cfg, min_precision=0.8))
    assert stats["threshold"] == pytest.approx(0.65)  # rank 7: 6 of 7 right
    assert stats["threshold_chosen_by"].startswith("dev")
    assert stats["dev"]["precision"] == pytest.approx(6 / 7) and stats["dev"]["precision"] >= 0.8
    assert stats["dev"]["kept"] == 7 and stats["dev"]["recall"] == pytest.approx(6 / 7)
    assert stats["dev"]["exact_match"] == pytest.approx(0.7)
    assert stats["kept"] == 3  # text confidences 0.9 0.8 0.7 >= 0.65
    assert stats["kept_per_intent"] == {INTENTS[0]: 1, INTENTS[1]: 1, INTENTS[2]: 1}

    stats = pseudo_label(dataclasses.replace(cfg, min_precision=0.9))
    assert stats["threshold"] == pytest.approx(0.85) and stats["dev"]["precision"] == 1.0
    assert stats["kept"] == 1

    # --threshold overrides; dev is only reported
    stats = pseudo_label(dataclasses.replace(cfg, threshold=0.77))
    assert stats["threshold"] == 0.77 and stats["threshold_chosen_by"] == "--threshold"
    assert stats["dev"]["kept"] == 4 and stats["dev"]["precision"] == pytest.approx(0.75)
    assert stats["kept"] == 2

    for k in table:
        table[k] = table[k]._replace(intent="nonsense")
    with pytest.raises(InputError, match=r"dev.jsonl.gz: no confidence threshold"):
        pseudo_label(cfg)


# ---------------------------------------------------------------------------- outputs


def test_output_is_an_nlu_manifest_and_deterministic(lm_data, multitask_ckpt, tmp_path):
    text = _write_text(tmp_path / "text.txt", UNIQUE_TEXT)
    a = _cfg(lm_data, multitask_ckpt, tmp_path, "a", text=text, max_sentences=5, seed=3)
    b = _cfg(lm_data, multitask_ckpt, tmp_path, "b", text=text, max_sentences=5, seed=3)
    sa, sb = pseudo_label(a), pseudo_label(b)
    assert a.out.read_bytes() == b.out.read_bytes()
    assert a.stats_path.read_bytes() == b.stats_path.read_bytes() and sa == sb
    assert sa["kept"] == 5 and sa["labelled"] == len(UNIQUE_TEXT)
    # read as train-lm --nlu-train reads it, and by Lhotse
    scorer = LMScorer.from_checkpoint(multitask_ckpt)
    utts = read_nlu(a.out, scorer.intents, scorer.slot_tags)
    assert [u.id for u in utts] == [f"pseudo-{k:06d}" for k in range(1, 6)]
    rows = [r for _, r in read_jsonl(a.out)]
    lines = [r["custom"]["line"] for r in rows]
    assert lines == sorted(lines)
    confs = [r["custom"]["confidence"] for r in rows]
    assert min(confs) > 0
    from lhotse import SupervisionSet

    assert len(SupervisionSet.from_file(a.out)) == 5
    # the 5 kept are the 5 most confident: recompute
    preds = scorer.predict_nlu_scored(UNIQUE_TEXT)
    conf = [pl.confidence(p, len(s.split())) for s, p in zip(UNIQUE_TEXT, preds, strict=True)]
    kept = {i - 1 for i in lines}
    dropped = [c for i, c in enumerate(conf) if i not in kept]
    assert min(conf[i] for i in kept) >= max(dropped) - 1e-5


def test_seed_orders_equal_confidences(lm_data, multitask_ckpt, tmp_path, monkeypatch):
    _fake_scorer(monkeypatch, {})  # every sentence has confidence 0.1: all tie
    text = _write_text(tmp_path / "text.txt", UNIQUE_TEXT)

    def kept_lines(name, seed):
        cfg = _cfg(lm_data, multitask_ckpt, tmp_path, name, text=text, max_sentences=4, seed=seed)
        pseudo_label(cfg)
        return cfg.out.read_bytes(), [r["custom"]["line"] for _, r in read_jsonl(cfg.out)]

    a, lines_a = kept_lines("s1a", 1)
    b, _ = kept_lines("s1b", 1)
    _, lines_c = kept_lines("s2", 2)
    assert a == b and len(lines_a) == 4
    assert lines_a != lines_c
    assert select([0.5, 0.5, 0.9], 0.0, 2, 1) in ([0, 2], [1, 2])
    assert select([0.5, 0.2, 0.9], 0.3, 0, 1) == [0, 2]


def test_skipped_lines_are_counted(lm_data, multitask_ckpt, tmp_path):
    exclude = write_nlu(tmp_path / "train.jsonl.gz", NLU_ROWS[:2], "train")
    lines = [
        "",
        "play a song by the beatles",
        "   ",
        "play a song by  the beatles",  # a repeat after whitespace normalisation
        "what is the weather in tokyo",  # a dev sentence of lm_data
        NLU_ROWS[0][0],  # excluded
        "play \u2603",  # a character the tokenizer does not know
        " ".join(["play"] * 200),  # more subwords than max_len
        "",
        "tell me a joke",
    ]
    text = _write_text(tmp_path / "text.txt", lines)
    cfg = _cfg(lm_data, multitask_ckpt, tmp_path, text=text, exclude_nlu=exclude)
    stats = pseudo_label(cfg)
    assert stats["lines_read"] == len(lines)
    assert stats["skipped"] == {
        "empty": 3,
        "duplicate": 1,
        "dev_sentence": 1,
        "excluded": 1,
        "unknown_chars": 1,
        "too_long": 1,
    }
    assert stats["labelled"] == 2 and stats["kept"] == 2
    assert json.loads(cfg.stats_path.read_text()) == stats

    only_empty = _write_text(tmp_path / "empty.txt", ["", " "])
    with pytest.raises(InputError, match=r"empty.txt: no sentence to label"):
        pseudo_label(_cfg(lm_data, multitask_ckpt, tmp_path, text=only_empty))


# ---------------------------------------------------------------------------- bad input, resume


def test_lm_only_checkpoint_is_a_clear_error(lm_data, pretrained, tmp_path, capsys):
    out = tmp_path / "x.jsonl.gz"
    argv = [
        "--checkpoint",
        str(pretrained),
        "--text",
        str(lm_data / "data/lm/pretrain.txt"),
        "--dev-nlu",
        str(lm_data / "data/manifests/snips_nlu_dev.jsonl.gz"),
        "--out",
        str(out),
    ]
    line = assert_user_error(*run_main(main, argv, capsys), "pseudo-label-nlu", pretrained)
    assert f"{pretrained}: --checkpoint has no NLU heads" in line
    assert not out.exists()
    code, err = run_main(main, [*argv, "--out", str(tmp_path / "x.txt")], capsys)
    assert_user_error(code, err, "pseudo-label-nlu", "--out")


def test_killed_run_resumes_from_its_chunks(lm_data, multitask_ckpt, tmp_path, monkeypatch, caplog):
    text = _write_text(tmp_path / "text.txt", UNIQUE_TEXT)  # 17 sentences: 5 chunks of <= 4
    full = _cfg(lm_data, multitask_ckpt, tmp_path, "full", text=text, max_sentences=9)
    pseudo_label(full)

    cfg = _cfg(lm_data, multitask_ckpt, tmp_path, "killed", text=text, max_sentences=9)
    real_write = pl._write_chunk

    def write_then_die(*args):
        real_write(*args)
        raise Killed

    monkeypatch.setattr(pl, "_write_chunk", write_then_die)
    with pytest.raises(Killed):
        pseudo_label(cfg)
    monkeypatch.setattr(pl, "_write_chunk", real_write)
    chunk0 = cfg.work_dir / "chunk-00000.jsonl.gz"
    assert chunk0.is_file() and not (cfg.work_dir / "chunk-00001.jsonl.gz").exists()
    assert not cfg.out.exists() and not cfg.stats_path.exists()
    assert not [p for p in cfg.out.parent.iterdir() if p.name.startswith(".")]  # no temp file
    inode = chunk0.stat().st_ino

    real_predict = LMScorer.predict_nlu_scored
    labelled: list[int] = []

    def counting(self, sentences):
        labelled.append(len(sentences))
        return real_predict(self, sentences)

    monkeypatch.setattr(LMScorer, "predict_nlu_scored", counting)
    with caplog.at_level(logging.INFO):
        pseudo_label(cfg)
    # dev (3 sentences) + the 13 text sentences after the first chunk
    assert sum(labelled) == 3 + len(UNIQUE_TEXT) - 4
    assert "1 reused, 4 labelled" in caplog.text
    assert chunk0.stat().st_ino == inode
    assert cfg.out.read_bytes() == full.out.read_bytes()
    assert cfg.stats_path.read_bytes() == full.stats_path.read_bytes()

    # a third run labels nothing and rewrites no file
    versions = {p: p.stat().st_mtime_ns for p in (cfg.out, cfg.stats_path)}
    labelled.clear()
    pseudo_label(cfg)
    assert sum(labelled) == 3
    assert {p: p.stat().st_mtime_ns for p in versions} == versions

    # a damaged chunk is labelled again
    (cfg.work_dir / "chunk-00001.jsonl.gz").write_bytes(b"garbage")
    labelled.clear()
    pseudo_label(cfg)
    assert sum(labelled) == 3 + 4
    assert cfg.out.read_bytes() == full.out.read_bytes()

    # another --batch-size makes every chunk stale
    labelled.clear()
    pseudo_label(dataclasses.replace(cfg, batch_size=5))
    assert sum(labelled) == 3 + len(UNIQUE_TEXT)


# ---------------------------------------------------------------------------- train-lm --nlu-extra


def test_train_lm_nlu_extra(lm_data, multitask_ckpt, tmp_path, caplog):
    text = _write_text(tmp_path / "text.txt", TEXT)
    cfg = _cfg(lm_data, multitask_ckpt, tmp_path, text=text)
    stats = pseudo_label(cfg)
    assert stats["kept"] == len(TEXT)

    model_cfg, tcfg = tiny_configs(
        lm_data, "multitask", "nlu_extra", epochs=1, nlu_extra=cfg.out, exp_dir=tmp_path / "exp"
    )
    with caplog.at_level(logging.INFO):
        summary = train_lm(model_cfg, tcfg)
    assert summary["best_epoch"] == 1 and math.isfinite(summary["best_dev"]["total_loss"])
    assert f"{len(TEXT)} utterances added to the {len(NLU_ROWS)} of --nlu-train" in caplog.text
    saved = json.loads((tcfg.exp_dir / "config.json").read_text())["config"]
    assert saved["nlu_extra"] == str(cfg.out)

    model_cfg, tcfg = tiny_configs(lm_data, "pretrain", "bad", nlu_extra=cfg.out)
    with pytest.raises(InputError, match="--nlu-extra: --mode pretrain"):
        train_lm(model_cfg, tcfg)
