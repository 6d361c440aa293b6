"""Output sets are all-or-nothing, locked, and verified by their readers (issue 10, item 3)."""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest

from common.io import InputError, dir_lock
from rescoring import outputs, report, rescore, score, tune
from rescoring.outputs import OutputSet, output_folder, sha256, verify_output
from tests.rescoring.conftest import bigram

SET_FILES = ("rescored-test.jsonl.gz", "onebest-test.jsonl.gz", "rescore-test.json")


def _rescore(tiny, out, *extra):
    rescore.main(
        ["--nbest", str(tiny / "nbest-test.jsonl"), "--out-dir", str(out), "--set-name", "test"]
        + (list(extra) or ["--scorer", "none"])
    )


def _score(tiny, out, s="test", system="sys"):
    score.main(
        [
            "--hyps",
            str(out / f"onebest-{s}.jsonl.gz"),
            "--gold",
            str(tiny / f"gold-{s}.jsonl"),
            "--word-counts",
            str(tiny / "counts.txt"),
            "--out-dir",
            str(out),
            "--set-name",
            s,
            "--system",
            system,
            "--bootstrap-samples",
            "20",
        ]
    )


def _hashes(out, names=SET_FILES) -> dict[str, str]:
    return {n: sha256(out / n) for n in names}


def _error(capsys, fn, *args) -> str:
    with pytest.raises(SystemExit) as e:
        fn(*args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    return err


def test_manifest_lists_the_set(tiny):
    out = tiny / "out"
    _rescore(tiny, out)
    m = json.loads((out / "set-rescore-test.json").read_text())
    assert m["producer"] == "rescore-nbest" and m["files"] == _hashes(out)
    assert m["params"]["select"] == "total" and m["params"]["scorer"] == "none"
    verify_output(out / "onebest-test.jsonl.gz")
    assert not list(out.glob(".staging-*"))


def test_full_disk_midway_leaves_the_previous_set(tiny, monkeypatch, capsys):
    """The defect: rescored-* of run B beside onebest-* of run A after a failure mid-way."""
    out = tiny / "out"
    _rescore(tiny, out)
    before = _hashes(out)

    def full_disk(path, records):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(rescore, "write_jsonl", full_disk)  # the 2nd file of the set
    err = _error(capsys, _rescore, tiny, out, "--scorer", "none", "--select", "oracle")
    assert "rescore-nbest: error:" in err and "onebest-test.jsonl.gz: No space left" in err
    assert _hashes(out) == before  # rescored-test too: nothing of run B was published
    verify_output(out / "onebest-test.jsonl.gz")
    assert not list(out.glob(".staging-*"))


def test_crash_while_publishing_is_detected(tiny, monkeypatch, capsys):
    out = tiny / "out"
    _rescore(tiny, out)
    real_replace, calls = os.replace, []

    def crash_after_first(src, dst):
        if ".staging-" in str(src) and os.path.dirname(dst) == str(out):  # publishing
            calls.append(dst)
            if len(calls) == 2:
                raise OSError(errno.EIO, "Input/output error", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", crash_after_first)
    _error(capsys, _rescore, tiny, out, "--scorer", "none", "--select", "oracle")
    monkeypatch.undo()
    assert len(calls) == 2 and not (out / "set-rescore-test.json").exists()
    err = _error(capsys, _score, tiny, out)
    assert "onebest-test.jsonl.gz: no set manifest" in err and "re-run rescore-nbest" in err


def test_files_of_two_runs_are_refused(tiny, capsys):
    a, b = tiny / "a", tiny / "b"
    _rescore(tiny, a)
    _rescore(tiny, b, "--scorer", "none", "--select", "oracle")
    shutil.copy(b / "rescored-test.jsonl.gz", a / "rescored-test.jsonl.gz")
    err = _error(capsys, _score, tiny, a)
    assert f"{a / 'onebest-test.jsonl.gz'}: the files of {a / 'set-rescore-test.json'}" in err
    assert "written by different runs" in err and "re-run rescore-nbest" in err
    (a / "rescored-test.jsonl.gz").unlink()
    err = _error(capsys, _score, tiny, a)
    assert "incomplete output set: rescored-test.jsonl.gz" in err
    _rescore(tiny, a)  # a re-run repairs the folder
    _score(tiny, a)


def test_second_run_into_a_locked_folder_fails_at_once(tiny, capsys):
    out = tiny / "out"
    with dir_lock(out, "output folder"):
        err = _error(capsys, _rescore, tiny, out)
        assert f"rescore-nbest: error: {out}: output folder is in use by another process" in err
        assert f"(pid {os.getpid()})" in err
        err = _error(
            capsys, tune.main, ["--nbest", str(tiny / "nbest-dev.jsonl"), "--out-dir", str(out)]
        )
        assert f"tune-rescoring: error: {out}: output folder is in use" in err
    assert not list(out.glob("*.jsonl.gz"))


def test_tune_set_and_overlapping_sets(tiny):
    out = tiny / "out"
    tune.main(["--nbest", str(tiny / "nbest-dev.jsonl"), "--out-dir", str(out), *bigram(tiny)])
    m = json.loads((out / "set-tune-dev.json").read_text())
    assert sorted(m["files"]) == sorted(
        [
            "tuned.json",
            "sweep-dev.tsv",
            "rescored-dev.jsonl.gz",
            "onebest-dev.jsonl.gz",
            "rescore-dev.json",
        ]
    )
    # Re-rescoring dev into the same folder takes the dev files over; tuned.json stays vouched.
    rescore.main(
        [
            "--nbest",
            str(tiny / "nbest-dev.jsonl"),
            "--set-name",
            "dev",
            "--params",
            str(out / "tuned.json"),
            "--out-dir",
            str(out),
        ]
    )
    m = json.loads((out / "set-tune-dev.json").read_text())
    assert sorted(m["files"]) == ["sweep-dev.tsv", "tuned.json"]
    assert "onebest-dev.jsonl.gz" in json.loads((out / "set-rescore-dev.json").read_text())["files"]
    for name in ("tuned.json", "sweep-dev.tsv", "onebest-dev.jsonl.gz"):
        verify_output(out / name)


def test_score_set_is_verified_by_make_report(tiny, capsys):
    rd = tiny / "rescore"
    out = rd / "rnnt_1best"
    _rescore(tiny, out)
    _score(tiny, out, system="rnnt_1best")
    m = json.loads((out / "set-score-test-rnnt_1best.json").read_text())
    assert sorted(m["files"]) == sorted(
        [
            "recogs-test-rnnt_1best.txt",
            "errs-test-rnnt_1best.txt",
            "wer-summary-test-rnnt_1best.txt",
            "rare-wer-test-rnnt_1best.txt",
            "metrics-test.json",
            "per-utt-test.jsonl.gz",
        ]
    )
    matrix = tiny / "systems.toml"
    matrix.write_text(
        'headline = "rnnt_1best"\nfirst_pass = "rnnt_1best"\noracle = "oracle"\n'
        '[systems.rnnt_1best]\nlabel = "1-best"\n'
        '[systems.oracle]\nlabel = "oracle"\nselect = "oracle"\n'
    )
    argv = ["--systems", str(matrix), "--rescore-dir", str(rd), "--out", str(tiny / "R.md")]
    report.main(argv)
    metrics = out / "metrics-test.json"
    metrics.write_text(metrics.read_text().replace('"wer"', '"wer" ', 1))
    err = _error(capsys, report.main, argv)
    assert f"make-report: error: {metrics}: the files of" in err and "re-run score-wer" in err


def test_stale_staging_folder_is_removed_and_unlisted_files_ignored(tiny):
    out = tiny / "out"
    out.mkdir()
    stale = out / ".staging-killed"
    stale.mkdir()
    (stale / "onebest-test.jsonl.gz").write_bytes(b"partial")
    with output_folder(out):
        assert not stale.exists()
    (out / "notes.json").write_text("{}")
    verify_output(out / "notes.json")  # not one of our names: read as it is
    with pytest.raises(InputError, match="no set manifest"):
        (out / "tuned.json").write_text("{}")
        verify_output(out / "tuned.json")


def test_output_set_publishes_nothing_on_error(tmp_path):
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), output_folder(tmp_path):
        with OutputSet(tmp_path, "x", "test", {}) as s:
            (s.dir / "a.txt").write_text("new")
            raise RuntimeError("boom")
    assert (tmp_path / "a.txt").read_text() == "old" and not (tmp_path / "set-x.json").exists()
