"""The data stages of recipes/snips/run.sh on the mini corpus, run as a user would."""

import os
import subprocess
import sys
from pathlib import Path

RUN_SH = Path(__file__).resolve().parents[2] / "recipes" / "snips" / "run.sh"


def _run(work: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(
        ["bash", str(RUN_SH), "--preset", "tiny", "--work-dir", str(work), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_data_stages_run_and_rerun(tmp_path, mini_snips_dir, mini_lm_text_dir):
    work = tmp_path / "work"
    args = (
        "--stage",
        "0",
        "--stop-stage",
        "5",
        "--corpus-dir",
        str(mini_snips_dir),
        "--lm-text-dir",
        str(mini_lm_text_dir),
    )
    r = _run(work, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    for rel in (
        "data/manifests/snips_nlu_train.jsonl.gz",
        "data/fbank/snips_cuts_test.jsonl.gz",
        "data/lang_bpe_64/bpe.model",
        "data/lm/pretrain.txt",
        "data/lang/rare_words.txt",
    ):
        assert (work / rel).is_file(), rel
    assert sorted(p.name for p in (work / ".done").iterdir()) == [f"stage{i}" for i in range(6)]
    before = (work / "data/manifests/snips_nlu_train.jsonl.gz").stat().st_mtime_ns
    r = _run(work, *args)
    assert r.returncode == 0
    assert r.stdout.count("already done, skipping") == 6
    assert (work / "data/manifests/snips_nlu_train.jsonl.gz").stat().st_mtime_ns == before


def test_help_and_bad_option():
    r = subprocess.run(["bash", str(RUN_SH), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "stage 0" in r.stdout
    r = subprocess.run(["bash", str(RUN_SH), "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr
