"""The whole SNIPS recipe on the tiny preset and the mini corpus, run as a user would:
killed during RNN-T training, re-run to the end (data -> RNN-T -> n-best -> LMs -> tuned
rescoring -> RESULTS.md), then re-run once more, which does nothing. The data stages 0-5 are
the session's run.sh run (tests/recipes/conftest.py, shared with test_run_sh_guards.py): the
test starts from a copy of that work dir."""

import contextlib
import fcntl
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.recipes.conftest import copy_work_dir, snips_args
from tests.recipes.procs import cmdline, group_members, threads_live

RUN_SH = Path(__file__).resolve().parents[2] / "recipes" / "snips" / "run.sh"
NUM_STAGES = 27  # stages 0-26 (conf/tiny.sh: rwm_sample and fusion on)


def _cmd(work: Path, *args: str) -> tuple[list[str], dict]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return ["bash", str(RUN_SH), "--preset", "tiny", "--work-dir", str(work), *args], env


def _run(work: Path, *args: str) -> subprocess.CompletedProcess:
    cmd, env = _cmd(work, *args)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def _kill_during_asr_training(work: Path, *args: str) -> None:
    cmd, env = _cmd(work, *args)
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 300
    while not (
        work / "exp/asr/conformer_rnnt/cmd.sh"
    ).is_file():  # written as stage 6 starts train-asr
        assert proc.poll() is None and time.time() < deadline, "recipe ended before stage 6"
        time.sleep(0.1)
    time.sleep(1.0)
    # Like `kill <pid of run.sh>`: only the script gets the signal; it must take the RNN-T
    # training it started in the background (and the LM training in the foreground) with it.
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=120)
    # run.sh returns only once its stages have exited (recipes/common/proc.sh, kill_children),
    # so at once: nothing of the run is left and its lock is free for the re-run
    left = _processes_using(work) + _group_members(proc.pid)
    with contextlib.suppress(ProcessLookupError):  # an empty group (all reaped) is not an error
        os.killpg(proc.pid, signal.SIGKILL)  # clean up whatever survived, then fail
    assert not left, f"still running after run.sh was killed: {left}"
    with (work / ".run.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if a stage still holds it
    assert not (work / ".done/stage6").exists()


def _group_members(pgid: int) -> list[str]:
    """Live processes (a thread not exited) of run.sh's group, whatever their command line (a
    ``sleep`` or ``sed`` of a stage inherits the lock too, and names no work dir)."""
    return [f"{pid} (group): {cmdline(pid)[:200]}" for pid in group_members(pgid)]


def _processes_using(work: Path) -> list[str]:
    """Command lines of live processes that mention ``work`` (our train-asr / train-lm)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        cmd = cmdline(pid)
        if str(work) in cmd and threads_live(pid):
            found.append(f"{pid}: {cmd[:200]}")
    return found


def test_tiny_recipe_killed_resumed_and_rerun(
    tmp_path, snips_tiny_data_work, mini_snips_dir, mini_lm_text_dir
):
    work = copy_work_dir(snips_tiny_data_work, tmp_path / "work")  # stages 0-5 done
    args = snips_args(mini_snips_dir, mini_lm_text_dir)
    _kill_during_asr_training(work, *args)
    r = _run(work, *args)
    assert r.stdout.count("already done, skipping") == 6  # stages 0-5 were complete
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for rel in (
        "data/manifests/snips_nlu_train.jsonl.gz",
        "data/fbank/snips_cuts_test.jsonl.gz",
        "data/lang_bpe_64/bpe.model",
        "data/lm/pretrain.txt",
        "data/lang/rare_words.txt",
        "exp/asr/conformer_rnnt/avg.pt",
        "exp/asr/conformer_rnnt/decode/nbest-test.jsonl.gz",
        "exp/lm/pretrain/best.pt",
        "exp/lm/pretrained_multitask_rwm/seed42/best.pt",
        "exp/lm/pretrained_multitask_rwm_pseudo/seed43/best.pt",
        "exp/lm/pretrained_multitask_rwm_sample/seed43/best.pt",
        "data/lm/pseudo_nlu.jsonl.gz",
        "exp/rescore/multitask_rwm/seed42/tuned.json",
        "exp/rescore/multitask_rwm/seed43/tuned.json",
        "exp/asr/conformer_rnnt/cmd.sh",
        "exp/lm/multitask_rwm/seed43/cmd.sh",
        "plots/test-wer.png",
    ):
        assert (work / rel).is_file(), rel
    assert len(list((work / ".done").iterdir())) == NUM_STAGES

    md = (work / "RESULTS.md").read_text()
    for label in (
        "RNN-T 1-best",
        "n-best oracle",
        "+ LM rescoring (LM objective only)",
        "+ multitask LM, linear weights",
        "+ multitask LM, RWM weights",
        "+ LM-pretrained, multitask fine-tuned (RWM)",
        "+ LM-pretrained, multitask fine-tuned (RWM, sampled task)",
        "+ LM-pretrained, multitask fine-tuned (RWM) + pseudo-labels",
    ):
        assert f"| {label} |" in md
    assert "not run" not in md and "## Stage times" in md and "train-lm" in md
    assert "Recipe wall-clock time" in md and "ran next to stages 9-16" in md  # parallel preset
    assert "System runs of `rescore-systems`" in md  # and how many ran early (timing-dependent)
    asr_log = (work / "log/asr-stages.log").read_text()
    assert "Stage 8: done" in asr_log and "Stage 21: done" in asr_log  # 17-21 next to the LMs
    # stages 22-23 (conf/tiny.sh fusion=true): the fusion LM, then the fused first pass
    assert "Stage 23: done" in asr_log
    fused = json.loads((work / "exp/asr/conformer_rnnt/decode_fused/fusion-tuned.json").read_text())
    assert fused["tune_set"] == "dev" and len(fused["grid"]) == 2  # conf/tiny.sh fusion_grid
    assert fused["chosen"]["lm_scale"] in (0.0, 0.2)
    assert (work / "exp/asr/token_lm/best.pt").is_file()
    assert "| fused RNN-T 1-best (LM shallow fusion) |" in md and "| fused + LM rescoring" in md
    assert "## Rare words: lexicon, beam, 1-best" in md  # stage 25's diagnostics
    # issue 13: the held-out TTS engine (festival) beside test, and the RNN-T's curve on it
    assert "## test vs test_unseen_engine" in md and "## Per TTS engine" in md
    monitor = (work / "exp/asr/conformer_rnnt/log/monitor.csv").read_text().splitlines()
    assert monitor[0].startswith("step,epoch,set,greedy_wer") and len(monitor) > 1
    assert all(",test_unseen_engine," in row for row in monitor[1:])
    assert "## RNN-T learning curve" in md and "test_unseen_engine WER |" in md  # make-report
    assert (work / "plots/asr-learning-curve.png").is_file()
    # conf/tiny.sh speed_perturb="0.9 1.1": stage 2 stored the copies, stage 6 trained on them
    cmd = (work / "exp/asr/conformer_rnnt/cmd.sh").read_text()
    for f in ("0.9", "1.1"):
        assert (work / f"data/fbank/snips_cuts_train_sp{f}.jsonl.gz").is_file()
        assert f"data/fbank/snips_cuts_train_sp{f}.jsonl.gz" in cmd.split("--speed-cuts", 1)[1]
    # conf/tiny.sh train_renders=2: every train sentence rendered again by the other engine,
    # its features and speed copies stored, and stage 6 drew from them (--render-cuts)
    renders = cmd.split("--render-cuts", 1)[1]
    for f in ("", "_sp0.9", "_sp1.1"):
        assert (work / f"data/fbank/snips_cuts_train_renders{f}.jsonl.gz").is_file()
        assert f"data/fbank/snips_cuts_train_renders{f}.jsonl.gz" in renders
    train_log = (work / "exp/asr/conformer_rnnt/log/log-train.txt").read_text()
    for v in ("r2", "r2x0.9", "r2x1.1"):
        assert re.search(rf"train_renders\S*: [1-9][0-9]* renderings \({v}\) of train", train_log)
    assert "## LM seeds" in md and "| + LM rescoring (LM objective only) | test | 43 |" in md
    pseudo = json.loads((work / "data/lm/pseudo_nlu.stats.json").read_text())
    assert pseudo["kept"] > 0
    for d in ("decode_biased_global", "decode_biased", "decode_biased_gold"):
        tuned = json.loads((work / f"exp/asr/conformer_rnnt/{d}/context-tuned.json").read_text())
        assert tuned["tune_set"] == "dev" and tuned["chosen_score"] in (0.5, 1.0)  # conf/tiny.sh
    # stage 21 (gold-intent bound): stage 20's score, no grid of its own
    biased, gold = (
        json.loads((work / f"exp/asr/conformer_rnnt/{d}/context-tuned.json").read_text())
        for d in ("decode_biased", "decode_biased_gold")
    )
    assert gold["score_from"].endswith("decode_biased/context-tuned.json")
    assert [g["score"] for g in gold["grid"]] == [biased["chosen_score"]] == [gold["chosen_score"]]
    res = json.loads((work / "results.json").read_text())
    for system in (
        "rnnt_1best",
        "oracle",
        "lm",
        "multitask_linear",
        "multitask_rwm",
        "pretrained_multitask_rwm",
        # issue 12: the biased first pass and its rescoring
        "biased_global_1best",
        "biased_1best",
        "biased_oracle",
        "biased_gold_1best",
        "biased_lm",
        "biased_pretrained_multitask_rwm",
        # issue 14: RWM sampled, pseudo-labels, the log-linear decoder with NLU features
        "pretrained_multitask_rwm_sample",
        "pretrained_multitask_rwm_pseudo",
        "nlu_features",
        "biased_nlu_features",
    ):
        for s in ("dev", "test", "test_unseen_engine"):  # conf/tiny.sh's TTS plan adds the last
            cell = res["systems"][system][s]
            assert cell["wer"]["value"] is not None and cell["wer"]["ci95"] is not None
            assert cell["intent_acc"]["value"] is not None  # NLU of the chosen hypothesis
        assert (
            res["systems"][system]["test"]["wer"]["value"]
            >= res["systems"]["oracle"]["test"]["wer"]["value"]
        )

    # the fused first pass (stages 22-23) and its rescorings, each no better than its own oracle
    for system in (
        "fused_1best",
        "fused_lm",
        "fused_pretrained_multitask_rwm",
        "fused_nlu_features",
    ):
        for s in ("dev", "test", "test_unseen_engine"):
            cell = res["systems"][system][s]
            assert cell["wer"]["value"] is not None and cell["intent_acc"]["value"] is not None
            oracle = res["systems"]["fused_oracle"][s]["wer"]["value"]
            assert cell["wer"]["value"] >= oracle
    # the log-linear decoder on the fused lists reads their fusion scores (0 at LM scale 0)
    with gzip.open(work / "exp/rescore/fused_nlu_features/seed42/features-dev.jsonl.gz", "rt") as f:
        fusion = [h["features"]["fusion"] for line in f for h in json.loads(line)["hyps"]]
    assert fusion and any(fusion) == (fused["chosen"]["lm_scale"] > 0)

    before = (work / "RESULTS.md").stat().st_mtime_ns
    r = _run(work, *args)
    assert r.returncode == 0
    assert r.stdout.count("already done, skipping") == NUM_STAGES
    assert (work / "RESULTS.md").stat().st_mtime_ns == before


def test_help_and_bad_option():
    r = subprocess.run(["bash", str(RUN_SH), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "stage 0" in r.stdout and "stage 26" in r.stdout
    r = subprocess.run(["bash", str(RUN_SH), "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr
