"""Stage markers: a marker counts as done only for the same command, variables and inputs."""

import json
import os
import platform

import pytest

from common.stages import (
    CHANGED,
    DONE,
    TO_RUN,
    StageRecord,
    cpu_model,
    fingerprint,
    main,
    referenced_vars,
    stage_table,
)


def _marker(tmp_path, cmd, *argv, inputs=(), outputs=(), body="", on_change="stop"):
    args = [cmd, "--done-dir", str(tmp_path / ".done"), "--stage", "3", "--desc", "demo"]
    args += ["--inputs", *map(str, inputs), "--outputs", *map(str, outputs)]
    args += ["--function-body", body]
    if cmd == "check":
        args += ["--on-change", on_change]
    else:
        args += ["--seconds", "12", "--peak-rss-kb", "2048"]
    with pytest.raises(SystemExit) as e:
        main([*args, "--", *argv])
    return e.value.code


def test_check_write_cycle(tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("a\n")
    out = tmp_path / "out.txt"
    assert _marker(tmp_path, "check", "prog", "--x", "1", inputs=[src], outputs=[out]) == TO_RUN
    out.write_text("done\n")
    assert _marker(tmp_path, "write", "prog", "--x", "1", inputs=[src], outputs=[out]) == DONE
    rec = json.loads((tmp_path / ".done/stage3").read_text())
    assert rec["argv"] == ["prog", "--x", "1"] and rec["seconds"] == 12
    assert _marker(tmp_path, "check", "prog", "--x", "1", inputs=[src], outputs=[out]) == DONE

    # other options: not done, and the run stops naming the difference
    assert _marker(tmp_path, "check", "prog", "--x", "2", inputs=[src], outputs=[out]) == CHANGED
    assert "'prog --x 1' -> 'prog --x 2'" in capsys.readouterr().err
    # changed input
    src.write_text("b, longer\n")
    assert _marker(tmp_path, "check", "prog", "--x", "1", inputs=[src], outputs=[out]) == CHANGED
    assert f"input {src} changed" in capsys.readouterr().err
    # --on-change rerun removes the marker and runs the stage
    assert (
        _marker(
            tmp_path, "check", "prog", "--x", "1", inputs=[src], outputs=[out], on_change="rerun"
        )
        == TO_RUN
    )
    assert not (tmp_path / ".done/stage3").exists()


def test_on_change_always_reruns_a_matching_stage(tmp_path, capsys):
    """The markers do not fingerprint the Python code: --on-change always redoes a stage whose
    marker matches (and one made by another configuration)."""
    out = tmp_path / "out.txt"
    out.write_text("x")
    assert _marker(tmp_path, "write", "prog", outputs=[out]) == DONE
    assert _marker(tmp_path, "check", "prog", outputs=[out]) == DONE
    assert _marker(tmp_path, "check", "prog", outputs=[out], on_change="always") == TO_RUN
    assert "running it again (--on-change always)" in capsys.readouterr().out
    assert not (tmp_path / ".done/stage3").exists()
    assert _marker(tmp_path, "write", "prog", outputs=[out]) == DONE
    assert _marker(tmp_path, "check", "other", outputs=[out], on_change="always") == TO_RUN


def test_missing_output_reruns_and_write_refuses_without_outputs(tmp_path, capsys):
    out = tmp_path / "out.txt"
    out.write_text("x")
    assert _marker(tmp_path, "write", "prog", outputs=[out]) == DONE
    out.unlink()
    assert _marker(tmp_path, "check", "prog", outputs=[out]) == TO_RUN
    assert "outputs are gone" in capsys.readouterr().out
    assert _marker(tmp_path, "write", "prog", outputs=[out]) == 2
    assert "finished without its outputs" in capsys.readouterr().err


def test_variables_of_the_stage_function_are_part_of_the_record(tmp_path, monkeypatch, capsys):
    body = 'stage_x () { train --opts $opts ${more:-}; echo "$work_dir"; }'
    monkeypatch.setenv("opts", "--epochs 1")
    monkeypatch.setenv("work_dir", "/a")
    assert referenced_vars(body, dict(os.environ)) == {"opts": "--epochs 1"}
    assert _marker(tmp_path, "write", "stage_x", body=body) == DONE
    monkeypatch.setenv("work_dir", "/elsewhere")  # where, not what: still done
    assert _marker(tmp_path, "check", "stage_x", body=body) == DONE
    monkeypatch.setenv("opts", "--epochs 9")
    assert _marker(tmp_path, "check", "stage_x", body=body) == CHANGED
    assert "$opts: '--epochs 1' -> '--epochs 9'" in capsys.readouterr().err


def test_old_format_marker_is_not_done(tmp_path):
    (tmp_path / ".done").mkdir()
    (tmp_path / ".done/stage3").write_text("12 345 demo\n")  # the format before markers were JSON
    assert _marker(tmp_path, "check", "prog") == TO_RUN


def test_folder_fingerprint_sees_added_and_changed_files(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub/a.wav").write_bytes(b"1")
    fp = fingerprint(d)
    assert fp[:2] == ["dir", 1]
    (d / ".lock").write_text("123")  # hidden files (locks, temp files) are ignored
    assert fingerprint(d) == fp
    (d / "b.wav").write_bytes(b"2")
    assert fingerprint(d) != fp
    assert fingerprint(tmp_path / "absent") is None


def test_stage_table_counts_the_longer_parallel_group(tmp_path):
    for n, secs in ((0, 10), (6, 100), (7, 5), (9, 40), (14, 3)):
        out = tmp_path / f"o{n}"
        out.write_text("x")
        with pytest.raises(SystemExit):
            main(
                ["write", "--done-dir", str(tmp_path / ".done"), "--stage", str(n), "--desc", f"s{n}",
                 "--seconds", str(secs), "--peak-rss-kb", "4096", "--preset", "tiny", "--", "p"]
            )  # fmt: skip
    md = stage_table(tmp_path / ".done", [set(range(6, 9)), set(range(9, 14))], cores=2)
    assert "| 6 | s6 | 100 | 4 |" in md and "(tiny preset, 2 CPU cores)" in md
    assert "**118 s (2 min)**" in md  # 158 - min(105, 40)
    assert "the sum of all stage times is 158 s" in md
    assert f"Host CPU when this report was made: {cpu_model()} (" in md


def test_cpu_model_reads_the_first_model_name(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\n"
        "processor\t: 1\nmodel name\t: Other\n"
    )
    assert cpu_model(info) == "AMD EPYC 7B13"
    info.write_text("processor\t: 0\nmodel name\t:\n")  # no value: platform's answer
    assert cpu_model(info) == (platform.processor() or "unknown")
    assert cpu_model(tmp_path / "absent") == (platform.processor() or "unknown")


def test_stage_table_shows_markers_of_the_older_format(tmp_path):
    done = tmp_path / ".done"
    done.mkdir()
    (done / "stage2").write_text("24 875000 Compute fbank features\n")  # before JSON markers
    (done / "stage3").write_text("6 - Train BPE models (128 256)\n")
    md = stage_table(done)
    assert "| 2 | Compute fbank features | 24 | 854 |" in md
    assert "| 3 | Train BPE models (128 256) | 6 | - |" in md


def test_parallel_groups_may_be_several_ranges():
    from common.stages import _range_name, parse_ranges

    assert parse_ranges(["6-8,17-21", "9-16"]) == [{6, 7, 8, 17, 18, 19, 20, 21}, set(range(9, 17))]
    assert _range_name({6, 7, 8, 17, 19, 20}) == "6-8, 17, 19-20"
    with pytest.raises(ValueError, match="6-8,17-21"):
        parse_ranges(["6-x"])


def test_stage_table_gives_the_span_of_the_markers(tmp_path):
    """A work dir whose stages were made on two days: the sum of stage times says 3 min, the span
    of the markers (first start to last end) says so plainly."""
    done = tmp_path / ".done"
    done.mkdir()
    for n, secs, end in ((0, 60, "2026-12-05 10:01:00"), (7, 120, "2026-12-06 10:02:00")):
        rec = StageRecord(stage=n, argv=["p"], desc=f"s{n}", seconds=secs, finished_at=end)
        (done / f"stage{n}").write_text(json.dumps(rec.__dict__))
    md = stage_table(done)
    assert "**180 s (3 min)** (sum of the stage times" in md
    assert "The stage markers span **86520 s (1442 min)**" in md  # 2026-12-05 10:00 to 12-06 10:02
    assert "(2026-12-05 10:00) to the last stage's end (2026-12-06 10:02," in md
    (done / "stage7").write_text(
        json.dumps({**rec.__dict__, "finished_at": "not a time"})
    )  # an unreadable time is left out of the span, not an error
    assert "span **60 s (1 min)**" in stage_table(done)


def test_stage_table_gives_each_parallel_group_its_span_and_waiting(tmp_path):
    """The RNN-T group (6, 7, 23) waits 18 min for the LM group's stage 22 before its stage 23:
    the sum rule cannot see it, the groups' spans by their markers do."""
    done = tmp_path / ".done"
    done.mkdir()
    for n, secs, end in (
        (0, 60, "2026-12-06 10:01:00"),
        (6, 3000, "2026-12-06 10:51:00"),
        (7, 60, "2026-12-06 10:52:00"),
        (9, 1800, "2026-12-06 10:31:00"),
        (22, 2340, "2026-12-06 11:10:00"),
        (23, 600, "2026-12-06 11:20:00"),
        (24, 600, "2026-12-06 11:30:00"),
    ):
        rec = StageRecord(stage=n, argv=["p"], desc=f"s{n}", seconds=secs, finished_at=end)
        (done / f"stage{n}").write_text(json.dumps(rec.__dict__))
    md = stage_table(done, [{6, 7, 8, 23}, {9, 10, 22}], cores=2)
    assert "The stage markers span **5400 s (90 min)**" in md
    assert (
        "The two parallel groups by their markers: stages 6-8, 23 from 10:01 to 11:20 (4740 s, "
        "1080 s of it waiting for the other group or between runs); stages 9-10, 22 from 10:01 "
        "to 11:10 (4140 s, 0 s of it waiting for the other group or between runs). The stages "
        "after them waited for stages 6-8, 23." in md
    )
    (done / "stage22").write_text(json.dumps({**rec.__dict__, "stage": 22, "finished_at": "?"}))
    (done / "stage9").write_text(json.dumps({**rec.__dict__, "stage": 9, "finished_at": "?"}))
    assert "The two parallel groups" not in stage_table(done, [{6, 7, 23}, {9, 22}])  # no times
