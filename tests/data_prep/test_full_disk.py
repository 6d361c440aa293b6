"""A full disk in the middle of a stage: one line naming the file, the earlier outputs kept."""

import errno
import os

import pytest

from data_prep import rare_words
from tests.data_prep.conftest import write_tiny_manifests


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_full_disk_keeps_the_previous_outputs(tmp_path, monkeypatch, capsys):
    md = write_tiny_manifests(tmp_path / "tiny")
    lang = tmp_path / "lang"
    argv = [
        "--supervisions",
        str(md / "snips_supervisions_train.jsonl.gz"),
        "--lang-dir",
        str(lang),
    ]
    rare_words.main([*argv, "--threshold", "2"])
    before = _snapshot(lang)

    calls = {"n": 0}

    def replace_fails(src, dst, *a, **k):  # the disk fills up as the second output is committed
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real_replace(src, dst, *a, **k)

    real_replace = os.replace
    monkeypatch.setattr(os, "replace", replace_fails)
    with pytest.raises(SystemExit) as e:
        rare_words.main([*argv, "--threshold", "3"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert "compute-rare-words: error:" in err and "No space left on device" in err
    assert str(lang) in err and "Traceback" not in err
    # word_counts.txt was committed (its content does not depend on K), rare_words.txt was not:
    # every file is whole and as before, and no temporary file is left behind
    assert _snapshot(lang) == before
