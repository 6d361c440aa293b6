"""Tiny end-to-end LM training: pre-train, multitask fine-tune, resume, every mode, the CLI."""

import dataclasses
import json

import pytest
import torch

from common.checkpoint import load_checkpoint
from common.io import InputError
from lm.train import build_configs, main, run
from tests.conftest import NATIVE_BF16
from tests.lm.conftest import tiny_configs


def test_pretrain_outputs(pretrained):
    exp = pretrained.parent
    for name in (
        "epoch-1.pt",
        "epoch-2.pt",
        "best.pt",
        "config.json",
        "dev_metrics.jsonl",
        "summary.json",
        "task_weights.png",
        "task_weights.tsv",
    ):
        assert (exp / name).is_file(), name
    ckpt = load_checkpoint(exp / "epoch-2.pt")
    for key in (
        "model",
        "optimizer",
        "lr_scheduler",
        "task_scheduler",
        "config",
        "env",
        "tokenizer",
        "epoch",
        "step",
        "dev_metrics",
    ):
        assert key in ckpt, key
    assert ckpt["env"]["torch"] and ckpt["env"]["git_sha"]
    assert ckpt["labels"] == {}
    rows = [json.loads(x) for x in (exp / "dev_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["ppl"] > 1 and rows[-1]["intent_acc"] is None


def test_finetune_multitask_metrics_and_weights(multitask_ckpt):
    exp = multitask_ckpt.parent
    rows = [json.loads(x) for x in (exp / "dev_metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for r in rows:
        assert 0.0 <= r["intent_acc"] <= 1.0 and 0.0 <= r["slot_f1"] <= 1.0 and r["ppl"] > 1
    tsv = (exp / "task_weights.tsv").read_text().splitlines()
    assert tsv[0] == "step\tw_lm\tw_intent\tw_slot" and len(tsv) > 2  # RWM moved the weights
    ckpt = load_checkpoint(multitask_ckpt)
    assert ckpt["labels"]["intents"] == ["BookRestaurant", "GetWeather", "PlayMusic"]
    assert ckpt["config"]["train"]["scheduler"] == "rwm"


def test_resume_from_last_complete_checkpoint_is_exact(lm_data, pretrained):
    model_cfg, cfg = tiny_configs(
        lm_data, "finetune-multitask", "resume", scheduler="rwm", init_from=pretrained, epochs=3
    )
    run(model_cfg, cfg)
    exp = cfg.exp_dir
    full = load_checkpoint(exp / "epoch-3.pt")
    (exp / "epoch-3.pt").unlink()  # "crash" during epoch 3
    summary = run(model_cfg, cfg)
    assert summary["epochs_run"] == 3
    resumed = load_checkpoint(exp / "epoch-3.pt")
    assert resumed["step"] == full["step"]
    for k, v in full["model"].items():
        torch.testing.assert_close(resumed["model"][k], v, atol=1e-5, rtol=1e-4)
    h_full, h_res = full["task_scheduler"]["history"], resumed["task_scheduler"]["history"]
    assert len(h_full) == len(h_res) > 2
    for a, b in zip(h_full, h_res, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    # a finished run is a no-op
    mtime = (exp / "epoch-3.pt").stat().st_mtime_ns
    run(model_cfg, cfg)
    assert (exp / "epoch-3.pt").stat().st_mtime_ns == mtime
    assert not (exp / "epoch-4.pt").exists()


@pytest.mark.parametrize(
    ("mode", "extra"),
    [("multitask", {"scheduler": "linear"}), ("finetune-lm", {})],
)
def test_other_modes(lm_data, pretrained, mode, extra):
    if mode == "finetune-lm":
        extra = {"init_from": pretrained, "train_text": lm_data / "data/lm/finetune.txt"}
    model_cfg, cfg = tiny_configs(lm_data, mode, mode, epochs=1, **extra)
    s = run(model_cfg, cfg)
    assert s["best_epoch"] == 1 and s["best_dev"]["ppl"] > 1
    if mode == "multitask":
        assert s["best_dev"]["slot_f1"] is not None
        w = (cfg.exp_dir / "task_weights.tsv").read_text().splitlines()[1].split("\t")
        assert [float(x) for x in w[1:]] == [1.0, 0.0, 0.0]  # linear ramp starts at 0


def test_cli_builds_typed_config_and_saves_it(lm_data, monkeypatch, capsys):
    model_cfg, cfg = build_configs(
        [
            "--preset",
            "tiny",
            "--mode",
            "multitask",
            "--scheduler",
            "rwm",
            "--rwm-eps",
            "0.3",
            "--task-weights",
            "1",
            "0.5",
            "0.5",
            "--arch",
            "transformer",
        ]
    )
    assert cfg.mode == "multitask" and cfg.rwm_eps == 0.3 and cfg.task_weights == (1.0, 0.5, 0.5)
    assert model_cfg.arch == "transformer" and model_cfg.embed_dim == 32  # tiny preset kept
    monkeypatch.chdir(lm_data)
    main(
        [
            "--preset",
            "tiny",
            "--mode",
            "multitask",
            "--scheduler",
            "linear",
            "--epochs",
            "1",
            "--exp-dir",
            "exp/cli",
            "--bpe-model",
            "data/lang_lm/lm_bpe.model",
            "--num-threads",
            "1",
        ]
    )
    saved = json.loads((lm_data / "exp/cli/config.json").read_text())
    assert saved["config"]["scheduler"] == "linear" and saved["model"]["arch"] == "lstm"
    assert "git_sha" in saved["env"]
    assert (lm_data / "exp/cli/cmd.sh").read_text().count("train-lm --preset tiny") == 1
    capsys.readouterr()
    for argv, message in (
        (["--mode", "pretrain", "--scheduler", "rwm"], "--scheduler fixed"),
        (["--mode", "finetune-multitask"], "needs --init-from"),
    ):
        with pytest.raises(SystemExit) as e:
            main(["--preset", "tiny", *argv])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "train-lm: error: " in err and message in err, err


@pytest.mark.parametrize(
    "cpu_bf16",
    [
        False,
        pytest.param(True, marks=NATIVE_BF16),
    ],
)
def test_cpu_bf16_autocasts_the_training_steps_only(lm_data, tmp_path, monkeypatch, cpu_bf16):
    import lm.train as train_mod

    seen = []
    real = train_mod.compute_loss

    def recording(model, batch, weights):
        loss, stats = real(model, batch, weights)
        seen.append((torch.is_autocast_enabled("cpu"), loss.dtype))
        return loss, stats

    monkeypatch.setattr(train_mod, "compute_loss", recording)
    model_cfg, cfg = tiny_configs(lm_data, "pretrain", "bf16", cpu_bf16=cpu_bf16, epochs=1)
    cfg = dataclasses.replace(cfg, exp_dir=tmp_path / "exp")
    run(model_cfg, cfg)
    assert seen and set(seen) == {(cpu_bf16, torch.float32)}  # the losses stay fp32
    state = load_checkpoint(tmp_path / "exp" / "best.pt")["model"]
    assert all(v.dtype != torch.bfloat16 for v in state.values())  # fp32 weights either way
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_cpu_bf16_without_native_bf16_is_a_clear_error(lm_data, tmp_path, monkeypatch):
    """Where oneDNN has no bf16 kernels the LSTM would fail mid-step with a oneDNN message:
    train-lm refuses at the start instead, before the exp dir is made."""
    import common.bf16_check as bf16

    monkeypatch.setattr(bf16, "onednn_bf16", lambda: False)
    model_cfg, cfg = tiny_configs(lm_data, "pretrain", "bf16", cpu_bf16=True, epochs=1)
    cfg = dataclasses.replace(cfg, exp_dir=tmp_path / "exp")
    with pytest.raises(InputError, match="--cpu-bf16 true: this CPU has no native bf16"):
        run(model_cfg, cfg)
    assert not (tmp_path / "exp").exists()


def test_a_step_budget_trains_the_same_model_twice(lm_data):
    """Two runs cut inside an epoch by the same --max-steps train the same weights and RWM
    history, whatever the host's speed (a --max-minutes cut cannot promise that: lm/README.md,
    "Step budgets")."""
    runs = []
    for name in ("steps_a", "steps_b"):
        model_cfg, cfg = tiny_configs(
            lm_data, "multitask", name, scheduler="rwm", epochs=10, max_steps=5, max_minutes=60.0
        )
        s = run(model_cfg, cfg)  # 2 batches per epoch: cut inside epoch 3
        assert s["steps"] == 5 and "--max-steps 5" in s["stop_reason"], s["stop_reason"]
        runs.append(load_checkpoint(cfg.exp_dir / "epoch-3.pt"))  # the cut epoch
        assert runs[-1]["step"] == 5
    a, b = runs
    assert a["model"].keys() == b["model"].keys()
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert a["task_scheduler"]["history"] == b["task_scheduler"]["history"]
