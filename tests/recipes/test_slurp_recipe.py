"""The SLURP recipe (recipes/slurp/run.sh, the shared stages of recipes/common/run.sh) on its
tiny preset and a corpus in SLURP's own file layout: end to end, then re-run (a no-op).

What is SLURP's own is checked here (prepare-slurp, text-only NLU validation, the leak filter
against SLURP devel/test, recording-level gold ids, SLURP's SLU metrics). Its tiny preset trains
one LM seed and leaves stage 14 out (rwm_sample=false); several seeds, stage 14, a third
evaluation set and kill/resume are tests/recipes/test_snips_recipe.py's."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.recipes.slurp_fixture import write_slurp_fixture

RUN_SH = Path(__file__).resolve().parents[2] / "recipes" / "slurp" / "run.sh"
NUM_STAGES = 24  # stages 0-26 but 14, 22, 23 (conf/tiny.sh: rwm_sample=false; fusion off)


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = ["bash", str(RUN_SH), "--preset", "tiny", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def test_tiny_slurp_recipe_end_to_end_and_rerun(tmp_path, mini_lm_text_dir):
    corpus = write_slurp_fixture(tmp_path / "slurp")
    work = tmp_path / "work"
    args = ("--work-dir", str(work), "--corpus-dir", str(corpus))
    args += ("--lm-text-dir", str(mini_lm_text_dir))
    r = _run(*args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert len(list((work / ".done").iterdir())) == NUM_STAGES
    assert not (work / ".done/stage14").exists() and not (work / "exp/lm/lm/seed43").exists()
    for rel in (
        "data/manifests/slurp_supervisions_test.jsonl.gz",
        "data/manifests/slurp_nlu_train.jsonl.gz",
        "data/fbank/slurp_cuts_train.jsonl.gz",
        "data/lang_bpe_48/bpe.model",
        "data/lang/lexicons/intent-weather_query.txt",
        "exp/asr/conformer_rnnt/decode/nbest-test.jsonl.gz",
        "exp/asr/conformer_rnnt/decode_biased/nbest-test.jsonl.gz",
        "exp/context/predicted.tsv",
    ):
        assert (work / rel).is_file(), rel
    # the LM text holds no SLURP devel/test sentence (stage 4's leak filter, by prefix)
    import gzip

    held_out = set()
    for split in ("dev", "test"):
        with gzip.open(work / f"data/manifests/slurp_nlu_{split}.jsonl.gz", "rt") as f:
            held_out |= {json.loads(line)["text"] for line in f}
    for name in ("pretrain.txt", "finetune.txt"):
        lines = set((work / "data/lm" / name).read_text().splitlines())
        assert lines and not lines & held_out, name
    md = (work / "RESULTS.md").read_text()
    assert md.startswith("# SLURP recipe results (tiny preset)")
    assert "SLURP's SLU metrics on test" in md  # rescore-systems --slu-metrics slurp
    res = json.loads((work / "results.json").read_text())
    assert set(res["systems"]["rnnt_1best"]["test"]["slurp"]) >= {"scenario_acc", "slu_f1"}
    # rwm_sample=false: stage 14's system leaves the matrix (rescoring and report)
    assert "pretrained_multitask_rwm_sample" not in res["systems"]
    assert "sampled task" not in md
    assert "trained with one LM seed (42): no spread over seeds" in md  # not "1 LM seeds"
    for system in ("rnnt_1best", "oracle", "pretrained_multitask_rwm", "biased_1best"):
        cell = res["systems"][system]["test"]
        assert cell["wer"]["value"] is not None and cell["intent_acc"]["value"] is not None
    # the evaluated ids are the recordings' (several per sentence), scored against their gold
    ids = {line.split()[0] for line in (work / "exp/context/gold.tsv").read_text().splitlines()}
    assert all(i.startswith("slurp-") and "-audio-" in i for i in ids)
    r = _run(*args)
    assert r.returncode == 0 and r.stdout.count("already done, skipping") == NUM_STAGES


def test_corpus_dir_is_required_and_help(tmp_path):
    r = _run("--work-dir", str(tmp_path / "w"))
    assert r.returncode != 0 and "--corpus-dir is required" in r.stdout + r.stderr
    r = subprocess.run(["bash", str(RUN_SH), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "prepare-slurp" in r.stdout and "stage 26" in r.stdout
