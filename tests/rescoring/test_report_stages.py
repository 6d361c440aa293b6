"""make-report's stage block: the system runs' own time, and the part done early (before the
parallel stage groups ended), which no stage marker times."""

from __future__ import annotations

import json
from datetime import datetime

from common.stages import StageRecord, parallel_end
from rescoring.report import system_runs, system_runs_md


def _markers(done, rows):
    done.mkdir()
    for n, secs, end in rows:
        rec = StageRecord(stage=n, argv=["p"], desc=f"s{n}", seconds=secs, finished_at=end)
        (done / f"stage{n}").write_text(json.dumps(rec.__dict__))


def _run(folder, seconds, end=None):
    folder.mkdir(parents=True)
    rec = {"steps": [], "inputs": {}, "seconds": seconds}
    if end is not None:
        rec["finished_at"] = end
    (folder / "system.json").write_text(json.dumps(rec))


def test_runs_before_the_groups_end_are_counted_as_early(tmp_path):
    done = tmp_path / ".done"
    _markers(
        done,
        (
            (6, 3000, "2026-12-06 10:50:00"),  # the RNN-T group ends at 10:50
            (9, 4800, "2026-12-06 11:20:00"),  # the LM group at 11:20
            (24, 100, "2026-12-06 11:22:00"),  # the rescoring stage after both
        ),
    )
    end = parallel_end(done, [{6}, {9}])
    assert end == datetime(2026, 12, 6, 11, 20)
    rd = tmp_path / "rescore"
    _run(rd / "a" / "seed1", 600.4, "2026-12-06 11:00:00")
    _run(rd / "a" / "seed2", 500, "2026-12-06 11:19:59")
    _run(rd / "b", 70, "2026-12-06 11:21:30")
    (rd / "c").mkdir()
    (rd / "c" / "system.json").write_text("{not json")  # unreadable: left out
    runs = system_runs(rd)
    assert sorted(s for s, _ in runs) == [70, 500, 600.4]
    md = system_runs_md(runs, rd, end)
    assert f"under `{rd}`): **3**, 1170 s by their own clocks." in md
    assert "2 of them (1100 s) ended before the parallel groups did" in md
    assert "the other 1 ran in the rescoring stage." in md


def test_without_times_the_runs_are_only_summed(tmp_path):
    rd = tmp_path / "rescore"
    _run(rd / "a", 10)  # a system.json written before finished_at was recorded
    _run(rd / "b", 5, "2026-12-06 11:00:00")
    runs = system_runs(rd)
    md = system_runs_md(runs, rd, None)  # no parallel groups
    assert "**2**, 15 s by their own clocks. Their finish times or the parallel" in md
    assert "ended before" not in md
    md = system_runs_md(runs, rd, datetime(2026, 12, 6, 10, 0))  # all after the groups
    assert "None ended before the parallel groups did" in md


def test_parallel_end_needs_two_timed_groups(tmp_path):
    done = tmp_path / ".done"
    _markers(done, ((6, 60, "2026-12-06 10:01:00"), (9, 60, "?")))
    assert parallel_end(done, [{6}, {9}]) is None  # group 9 has no readable time
    assert parallel_end(done, [{6}]) is None


def test_table_and_parallel_end_read_the_same_records(tmp_path):
    """One reading of the markers serves both; a group whose only marker is of the old format
    (no finish time) gives no span to either, so neither reports an end."""
    from common.stages import stage_records, stage_table

    done = tmp_path / ".done"
    _markers(done, ((6, 3000, "2026-12-06 10:50:00"), (24, 100, "2026-12-06 11:22:00")))
    (done / "stage9").write_text("4800 875000 Train the LMs\n")  # old format: no finish time
    recs = stage_records(done)
    assert [r.stage for r in recs] == [6, 9, 24]
    assert stage_table(recs, [{6}, {9}], cores=2) == stage_table(done, [{6}, {9}], cores=2)
    md = stage_table(recs, [{6}, {9}], cores=2)
    assert "stages 6 (3000 s) ran next to stages 9 (4800 s)" in md  # both groups counted
    assert "The two parallel groups by their markers" not in md  # stage 9 has no time
    assert parallel_end(recs, [{6}, {9}]) is None
    assert parallel_end(done, [{6}, {9}]) is None
    _markers(tmp_path / "d2", ((6, 3000, "2026-12-06 10:50:00"), (9, 4800, "2026-12-06 11:20:00")))
    assert parallel_end(stage_records(tmp_path / "d2"), [{6}, {9}]) == datetime(2026, 12, 6, 11, 20)
