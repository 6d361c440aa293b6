"""run.sh guards: validated stage numbers, honest .done markers, one run per work dir."""

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.recipes.conftest import copy_work_dir, snips_args

RUN_SH = Path(__file__).resolve().parents[2] / "recipes" / "snips" / "run.sh"


def _run(
    work: Path, *args: str, preset: str = "tiny", timeout: int = 600, cpu_bf16="false", cwd=None
):
    # CPU_BF16: the default preset's bf16 branch without check-bf16's timing (host.sh)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env.pop("CPU_BF16", None)
    if cpu_bf16 is not None:
        env["CPU_BF16"] = cpu_bf16
    cmd = ["bash", str(RUN_SH), "--preset", preset, "--work-dir", str(work), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def data_work(tmp_path_factory, snips_tiny_data_work, mini_snips_dir, mini_lm_text_dir):
    """A work dir with stages 0-5 done on the tiny preset (a copy of the session's)."""
    work = copy_work_dir(snips_tiny_data_work, tmp_path_factory.mktemp("guards") / "work")
    return work, snips_args(mini_snips_dir, mini_lm_text_dir)


@pytest.mark.parametrize(
    "opts, message",
    [
        (("--stage", "abc"), "--stage must be a stage number, got 'abc'"),
        (("--stop-stage", "-1"), "--stop-stage must be a stage number"),
        (("--on-change", "maybe"), "--on-change must be stop, rerun or always"),
        (("--preset", "nope"), "no preset file"),
    ],
)
def test_bad_options_stop_before_any_work(tmp_path, opts, message):
    r = _run(tmp_path / "w", *opts)
    assert r.returncode == 2 and message in r.stderr
    assert not (tmp_path / "w" / ".done").exists()


def test_other_preset_does_not_count_as_done(data_work):
    work, args = data_work
    r = _run(work, *args, "--stop-stage", "5", preset="default")
    assert r.returncode != 0
    assert "stage 0 (Prepare SNIPS manifests and synthesize audio) was done by another" in r.stderr
    assert "preset tiny, now default" in r.stderr and "--max-per-split" in r.stderr
    assert "already done" not in r.stdout
    # and the same preset still skips everything
    r = _run(work, *args, "--stop-stage", "5")
    assert r.returncode == 0 and r.stdout.count("already done, skipping") == 6


def test_lost_output_reruns_its_stage(data_work):
    work, args = data_work
    (work / "data/lang/rare_words.txt").unlink()
    r = _run(work, *args, "--stage", "5", "--stop-stage", "5")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "outputs are gone" in r.stdout and (work / "data/lang/rare_words.txt").is_file()


def test_on_change_rerun_redoes_the_changed_stage_and_what_depends_on_it(
    tmp_path, snips_tiny_data_work, mini_snips_dir, mini_lm_text_dir
):
    work = copy_work_dir(snips_tiny_data_work, tmp_path / "work")  # stages 0-5 done (tiny)
    args = snips_args(mini_snips_dir, mini_lm_text_dir)
    r = _run(work, *args, "--stop-stage", "1")
    assert r.returncode == 0 and r.stdout.count("already done, skipping") == 2
    r = _run(work, *args, "--stop-stage", "1", "--on-change", "rerun", preset="default")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "stage 0 (Prepare SNIPS manifests and synthesize audio) was done by another" in r.stdout
    assert "input data/manifests changed since the stage ran" in r.stdout  # stage 1 follows
    assert "already done" not in r.stdout
    r = _run(work, *args, "--stop-stage", "1", preset="default")
    assert r.returncode == 0 and r.stdout.count("already done, skipping") == 2


def test_second_run_in_the_same_work_dir_is_refused(data_work):
    work, args = data_work
    with open(work / ".run.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = _run(work, *args, "--stop-stage", "5")
    assert r.returncode == 2 and "is in use by another run.sh" in r.stderr
    holders = [line.strip() for line in r.stderr.splitlines() if line.startswith("  ")]
    assert [h.split(":")[0] for h in holders] == [str(os.getpid())]  # named; not itself


def test_refused_run_does_not_read_the_preset(data_work):
    """The lock comes before the preset: the default preset asks cpu_bf16_pays, which measures
    the host (check-bf16) or caches its answer in log/.cpu-bf16; a refused run does neither."""
    work, args = data_work
    cache = work / "log" / ".cpu-bf16"
    cache.unlink(missing_ok=True)
    with open(work / ".run.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = _run(work, *args, "--stop-stage", "5", preset="default", cpu_bf16=None)
    assert r.returncode == 2 and "is in use by another run.sh" in r.stderr
    assert not cache.exists() and not cache.with_name(".cpu-bf16.json").exists()


def test_relative_work_dir_is_made_absolute(data_work):
    """--work-dir relative to the caller's folder: resolved once, so the log (and every cmd.sh
    header) names the folder the stages ran in."""
    work, args = data_work
    r = _run(Path(work.name), *args, "--stop-stage", "5", cwd=work.parent)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"work dir {work.resolve()}, stages 0..5" in r.stdout
    assert r.stdout.count("already done, skipping") == 6
    assert not (work / work.name).exists()


def test_stages_of_a_run_killed_with_sigkill_keep_the_work_dir(data_work):
    """kill -9 cannot be trapped: the orphaned stage still holds the lock, so a re-run refuses
    (naming it) instead of starting a second trainer on the same exp dir."""
    work, args = data_work
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = ["bash", str(RUN_SH), "--preset", "tiny", "--work-dir", str(work), *args]
    proc = subprocess.Popen(
        [*cmd, "--stage", "9", "--stop-stage", "9"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while not (work / "exp/lm/pretrain/cmd.sh").is_file():
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        # Freeze the whole group so the orphan cannot finish first, then kill -9 run.sh alone.
        os.killpg(proc.pid, signal.SIGSTOP)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        r = _run(work, *args, "--stage", "9", "--stop-stage", "9")
        assert r.returncode == 2
        assert "in use by another run.sh, or by the stages of one that was killed" in r.stderr
        assert "train-lm" in r.stderr
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
