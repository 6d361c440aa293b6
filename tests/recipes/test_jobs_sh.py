"""recipes/common/jobs.sh: run_seeds trains the seeds of an LM stage side by side only while a
core is idle (the lm_seed_free command says so), one after another otherwise, and no seed's
failure is lost; asr_core_idle is that command in run.sh's parallel layout.

No test here depends on timing: a seed that must run next to another waits until the other has
started (up to a minute, which only a broken run_seeds reaches), and "one after another" is read
from the order of the start and end records, not from durations."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
JOBS_SH = ROOT / "recipes" / "common" / "jobs.sh"

# A stand-in for stage_lm_seed: records its start and end in $rec (one line each, appended
# atomically), waits while $hold_until_n seeds have not started (up to $hold_iters tenths of a
# second, default 60 s), prints a line,
# fails for the seed named in $fail_seed.
_SEED_FN = r"""
log() { echo "LOG $*"; }
seed_fn() {
  local s=$1 name=$2 i
  echo "start $s $name" >> "$rec"
  for ((i = 0; i < ${hold_iters:-600}; i++)); do
    [ "$(grep -c '^start' "$rec")" -ge "${hold_until_n:-0}" ] && break
    [ -n "${hold_until_n:-}" ] || break
    sleep 0.1
  done
  echo "output of seed $s"
  echo "end $s" >> "$rec"
  [ "$s" != "${fail_seed:-}" ]
}
"""


def _run_seeds(tmp_path: Path, seeds: str, env: dict[str, str], pre: str = ""):
    rec = tmp_path / "rec.txt"
    script = (
        f". {JOBS_SH}\n{_SEED_FN}\n{pre}\n"
        f'run_seeds "{seeds}" "train-lm sys/x" seed_fn sys/x --opt 1\n'
    )
    full_env = {
        "PATH": "/usr/bin:/bin",
        "rec": str(rec),
        "seed_log_dir": str(tmp_path / "log"),
        "seed_poll": "0.1",
        **env,
    }
    r = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    events = rec.read_text().split("\n")[:-1] if rec.exists() else []
    return r, events


def _env(tmp_path: Path, jobs: str, free: bool | None, **extra: str) -> dict[str, str]:
    """lm_seed_jobs, and lm_seed_free: a test of tmp_path/free (created when ``free``), or
    empty (None: always free); ``extra``: the stand-in seed's knobs."""
    flag = tmp_path / "free"
    if free:
        flag.touch()
    return {
        "lm_seed_jobs": jobs,
        "lm_seed_free": "" if free is None else f"test -f {flag}",
        **extra,
    }


def _overlapped(events: list[str]) -> bool:
    """Whether some seed started while another was running."""
    live = 0
    for e in events:
        if e.startswith("start"):
            if live:
                return True
            live += 1
        else:
            live -= 1
    return False


def test_one_after_another_without_the_flag(tmp_path):
    """Seed 42 waits 2 s for a second seed to start: a run_seeds that ignored the missing flag
    would start 43 meanwhile."""
    env = _env(tmp_path, "2", False, hold_until_n="2", hold_iters="20")
    r, events = _run_seeds(tmp_path, "42 43 44", env)
    assert r.returncode == 0, r.stderr
    assert events == [
        "start 42 sys/x",
        "end 42",
        "start 43 sys/x",
        "end 43",
        "start 44 sys/x",
        "end 44",
    ]
    assert r.stdout.count("output of seed") == 3  # all on the caller's output
    assert "LOG train-lm sys/x, seed 43" in r.stdout


def test_two_at_once_while_the_flag_exists(tmp_path):
    env = _env(tmp_path, "2", True, hold_until_n="2")
    r, events = _run_seeds(tmp_path, "42 43 44", env)
    assert r.returncode == 0, r.stderr
    assert events[:2] == ["start 42 sys/x", "start 43 sys/x"]  # 42 waited for 43 to start
    assert sorted(events) == sorted(
        ["start 42 sys/x", "start 43 sys/x", "start 44 sys/x", "end 42", "end 43", "end 44"]
    )
    # never three at once: 44 started only after one of them ended
    assert events.index("start 44 sys/x") > min(events.index("end 42"), events.index("end 43"))
    # the first seed in flight on the caller's output, one started next to it in its own file
    assert "output of seed 42" in r.stdout and "output of seed 43" not in r.stdout
    log43 = tmp_path / "log" / "train-lm-sys-x-seed43.log"
    assert log43.read_text() == "output of seed 43\n"
    assert f"seed 43, next to seed 42 (a core is idle): output in {log43}" in r.stdout


def test_an_empty_flag_path_means_always_free(tmp_path):
    r, events = _run_seeds(tmp_path, "42 43", _env(tmp_path, "2", None, hold_until_n="2"))
    assert r.returncode == 0, r.stderr
    assert _overlapped(events)


def test_one_job_is_the_old_loop_even_with_the_flag(tmp_path):
    env = _env(tmp_path, "1", True, hold_until_n="2", hold_iters="20")
    r, events = _run_seeds(tmp_path, "42 43", env)
    assert r.returncode == 0, r.stderr
    assert not _overlapped(events) and len(events) == 4


def test_a_flag_that_appears_is_used_from_the_next_seed_on(tmp_path):
    """Seed 42 starts alone (no flag yet), then creates the flag (the RNN-T group going idle) and
    waits until a second seed has started: only a run_seeds that looks at the flag again while
    42 runs starts 43 next to it."""
    pre = (
        "orig_fn=$(declare -f seed_fn | tail -n +2)\n"
        'eval "seed_fn_inner() $orig_fn"\n'
        'seed_fn() { if [ "$1" = 42 ]; then touch "$flag"; hold_until_n=2 seed_fn_inner "$@"; '
        'else seed_fn_inner "$@"; fi; }\n'
    )
    env = _env(tmp_path, "2", False, flag=str(tmp_path / "free"))
    r, events = _run_seeds(tmp_path, "42 43 44", env, pre)
    assert r.returncode == 0, r.stderr
    assert events[:2] == ["start 42 sys/x", "start 43 sys/x"]
    assert "seed 43, next to seed 42 (a core is idle)" in r.stdout
    assert "LOG train-lm sys/x, seed 42\n" in r.stdout  # 42 itself started alone


def test_a_failed_seed_is_named_and_the_others_still_run(tmp_path):
    env = _env(tmp_path, "2", True, hold_until_n="2", fail_seed="42")
    r, events = _run_seeds(tmp_path, "42 43 44", env)
    assert r.returncode == 1
    assert {e for e in events if e.startswith("end")} == {"end 42", "end 43", "end 44"}
    assert "LOG ERROR: train-lm sys/x failed for seed(s) 42" in r.stdout


def test_a_bad_job_count_stops_with_a_message(tmp_path):
    r, events = _run_seeds(tmp_path, "42 43", _env(tmp_path, "two", None))
    assert r.returncode == 2 and "lm_seed_jobs must be a positive integer, got 'two'" in r.stderr


def _idle(tmp_path: Path, *files: str) -> bool:
    log = tmp_path / "log"
    log.mkdir(exist_ok=True)
    for f in files:
        (log / f).touch()
    r = subprocess.run(
        ["bash", "-c", f"set -euo pipefail; . {JOBS_SH}; asr_core_idle"], cwd=tmp_path, timeout=30
    )
    assert r.returncode in (0, 1)
    return r.returncode == 0


def test_asr_core_idle_while_the_rnnt_group_waits_or_has_finished(tmp_path):
    assert not _idle(tmp_path)  # running its own stages
    assert _idle(tmp_path, ".asr-waits-for-13")
    # the LM group passed 13 (before starting its next stage): the RNN-T group resumes now
    assert not _idle(tmp_path, ".lm-stage13-passed")
    assert _idle(tmp_path, ".asr-waits-for-22")  # a later wait, 22 not passed
    assert not _idle(tmp_path, ".lm-stage22-passed")
    assert _idle(tmp_path, ".asr-done")
    assert not _idle(tmp_path, ".asr-busy")  # finished, but its early rescoring holds the core


def test_the_beside_flag_exists_exactly_while_two_seeds_run(tmp_path):
    """seeds_beside_flag (what run.sh's early rescoring watches): 42 sees it once 43 has
    started; 43, left alone after 42 ended, sees it go (up to a minute: only a run_seeds that
    keeps the flag until the stage ends waits that long); it is gone when run_seeds returns."""
    flag = tmp_path / "beside"
    pre = (
        'seed_fn() { local s=$1 i; echo "start $s" >> "$rec"\n'
        '  for ((i = 0; i < 600; i++)); do [ "$(grep -c ^start "$rec")" -ge 2 ] && break; '
        "sleep 0.1; done\n"
        '  if [ "$s" = 42 ]; then [ -f "$seeds_beside_flag" ] && echo "42 flag" >> "$rec"; '
        'echo "end 42" >> "$rec"; return 0; fi\n'
        '  for ((i = 0; i < 600; i++)); do grep -q "^end 42" "$rec" && break; sleep 0.1; done\n'
        '  for ((i = 0; i < 600; i++)); do [ -f "$seeds_beside_flag" ] || break; sleep 0.1; done\n'
        '  [ -f "$seeds_beside_flag" ] || echo "43 alone" >> "$rec"; echo "end 43" >> "$rec"; }\n'
    )
    env = _env(tmp_path, "2", None, seeds_beside_flag=str(flag))
    r, events = _run_seeds(tmp_path, "42 43", env, pre)
    assert r.returncode == 0, r.stderr
    assert sorted(events[:2]) == ["start 42", "start 43"]  # started at once, either first
    assert events[2:] == ["42 flag", "end 42", "43 alone", "end 43"]
    assert not flag.exists()


_WANT_SEED_FN = r"""
seed_fn() { local s=$1 i; echo "start $s" >> "$rec"
  if [ "$s" = 42 ]; then
    for ((i = 0; i < ${want_iters:-600}; i++)); do [ -f "$seeds_want_flag" ] && break; sleep 0.1; done
    [ -f "$seeds_want_flag" ] && echo "want" >> "$rec"
    touch "$free_flag"  # early rescoring leaves the core: 43 may start
    for ((i = 0; i < 600; i++)); do
      [ "$lm_seed_jobs" = 1 ] || [ "$(grep -c ^start "$rec")" -ge 2 ] && break; sleep 0.1
    done
  fi
  [ -f "$seeds_want_flag" ] && echo "$s sees want" >> "$rec"
  echo "end $s" >> "$rec"; }
"""


def test_the_want_flag_exists_while_a_due_seed_waits_for_a_core(tmp_path):
    """seeds_want_flag (what run.sh's early rescoring leaves the core for): 43 is due while 42
    runs and no core is idle, so the flag appears (42 waits for it up to a minute: only a
    run_seeds without it waits that long); 42 then frees a core, 43 starts beside it, and the
    flag is gone before 43 starts and when run_seeds returns."""
    want, free = tmp_path / "want", tmp_path / "free"
    env = _env(tmp_path, "2", False, seeds_want_flag=str(want), free_flag=str(free))
    r, events = _run_seeds(tmp_path, "42 43", env, _WANT_SEED_FN)
    assert r.returncode == 0, r.stderr
    assert events[:3] == ["start 42", "want", "start 43"]
    assert "43 sees want" not in events and "42 sees want" not in events
    assert "seed 43, next to seed 42 (a core is idle)" in r.stdout
    assert not want.exists()


def test_no_want_flag_when_no_more_seeds_may_run(tmp_path):
    """lm_seed_jobs 1: a seed due while another runs waits for it, not for a core, so there is
    no flag to see in the 2 s seed 42 looks for it (run_seeds polls every 0.1 s here)."""
    want, free = tmp_path / "want", tmp_path / "free"
    env = _env(
        tmp_path, "1", False, seeds_want_flag=str(want), free_flag=str(free), want_iters="20"
    )
    r, events = _run_seeds(tmp_path, "42 43", env, _WANT_SEED_FN)
    assert r.returncode == 0, r.stderr
    assert events == ["start 42", "end 42", "start 43", "end 43"]
    assert not want.exists()


def _may_take(tmp_path: Path, *files: str) -> bool:
    log = tmp_path / "log"
    log.mkdir(parents=True, exist_ok=True)
    for f in files:
        (log / f).touch()
    r = subprocess.run(
        ["bash", "-c", f"set -euo pipefail; . {JOBS_SH}; rescore_may_take_core"],
        cwd=tmp_path,
        timeout=30,
    )
    assert r.returncode in (0, 1)
    return r.returncode == 0


def test_early_rescoring_leaves_the_core_to_seeds(tmp_path):
    assert _may_take(tmp_path / "a")  # tmp_path/a: no flags
    assert not _may_take(tmp_path / "b", ".lm-seeds-beside")
    assert not _may_take(tmp_path / "c", ".lm-seeds-want")


# early_rescore_loop (run.sh's early rescoring): RUN_ONE and COUNT are stand-ins that record each
# run's start and end (and whether the busy file was held) in $rec; $runs_then_done is the run
# after which the other group "finishes" (touches its done flag).
_LOOP_FNS = r"""
log() { echo "LOG $*"; }
count_runs() { grep -c '^end' "$rec" || true; }
run_one() {
  local who=${1:-A}
  echo "start $who busy=$([ -f log/.busy ] && echo 1 || echo 0)" >> "$rec"
  [ -z "${fail_run:-}" ] || return 1
  echo "end $who" >> "$rec"
  if [ "$(grep -c '^end' "$rec")" -ge "${runs_then_done:-1000000}" ]; then touch other_done; fi
}
"""


def _loop(tmp_path: Path, body: str, fns: str = _LOOP_FNS, **env: str):
    rec = tmp_path / "rec.txt"
    rec.touch()
    (tmp_path / "log").mkdir(exist_ok=True)
    r = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n. {JOBS_SH}\n{fns}\n{body}\n"],
        env={
            "PATH": "/usr/bin:/bin",
            "rec": str(rec),
            "seed_poll": "0.1",
            "rescore_poll": "0.1",
            "rescore_idle_poll": "0",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    return r, rec.read_text().split("\n")[:-1]


def test_early_rescoring_runs_until_the_other_group_has_finished(tmp_path):
    r, events = _loop(
        tmp_path,
        "early_rescore_loop me other_done $$ log/.busy run_one count_runs",
        runs_then_done="3",
    )
    assert r.returncode == 0, r.stderr
    assert events == ["start A busy=1", "end A"] * 3  # the core held during every run
    assert not (tmp_path / "log/.busy").exists()
    assert "LOG Early rescoring (me): 3 system runs" in r.stdout


def test_no_early_rescoring_once_the_other_group_is_done_or_gone(tmp_path):
    (tmp_path / "other_done").touch()
    r, events = _loop(tmp_path, "early_rescore_loop me other_done $$ '' run_one count_runs")
    assert r.returncode == 0 and events == []
    (tmp_path / "other_done").unlink()
    r, events = _loop(
        tmp_path,
        "sleep 0 & gone=$!; wait $gone\n"
        "early_rescore_loop me other_done $gone '' run_one count_runs",
    )
    assert r.returncode == 0 and events == []  # the other group's process has ended (failed)


def test_a_failed_run_ends_early_rescoring_and_frees_the_core(tmp_path):
    r, events = _loop(
        tmp_path, "early_rescore_loop me other_done $$ log/.busy run_one count_runs", fail_run="1"
    )
    assert r.returncode == 0  # stage 24 does the rest
    assert events == ["start A busy=1"]
    assert not (tmp_path / "log/.busy").exists()
    assert "Early rescoring failed" in r.stdout


def test_only_the_group_that_finished_first_rescores_early(tmp_path):
    """run.sh's handover: each group touches its done flag, then loops while the other's is
    absent. A finishes first and rescores; B finishes during A's first run: B starts no run, A
    starts no run after it, and no two runs overlap."""
    body = r"""
(touch a_done
 early_rescore_loop A b_done $$ '' 'run_one A' count_runs) &
a=$!
(until grep -q '^start A' "$rec"; do sleep 0.1; done
 touch b_done
 early_rescore_loop B a_done $$ '' 'run_one B' count_runs
 echo "B ended" >> "$rec") &
b=$!
wait $a; wait $b
"""
    # A's run waits until B has ended its loop (so B had every chance to start one beside it)
    fns = _LOOP_FNS.replace(
        '  echo "end $who" >> "$rec"',
        '  until grep -q "^B ended" "$rec"; do sleep 0.1; done\n  echo "end $who" >> "$rec"',
    )
    r, events = _loop(tmp_path, body, fns)
    assert r.returncode == 0, r.stderr
    assert events == ["start A busy=0", "B ended", "end A"]
