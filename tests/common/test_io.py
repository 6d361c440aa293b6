"""common.io: reproducible gzip, ordinary permissions, exact line numbers, one process per folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.io import InputError, atomic_path, atomic_write, dir_lock, open_text, read_jsonl

ROOT = Path(__file__).resolve().parents[2]


def test_gzip_bytes_do_not_depend_on_time_or_temp_name(tmp_path, monkeypatch):
    import time

    with atomic_write(tmp_path / "a.jsonl.gz") as f:
        f.write('{"x": 1}\n')
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)  # gzip would stamp this
    with atomic_write(tmp_path / "b.jsonl.gz") as f:
        f.write('{"x": 1}\n')
    a, b = (tmp_path / "a.jsonl.gz").read_bytes(), (tmp_path / "b.jsonl.gz").read_bytes()
    assert a == b and a[4:8] == b"\0\0\0\0"  # MTIME field of the gzip header
    assert list(read_jsonl(tmp_path / "b.jsonl.gz")) == [(1, {"x": 1})]


def test_outputs_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "t.txt") as f:
            f.write("x")
        with atomic_path(tmp_path / "m.pt") as tmp:
            tmp.write_bytes(b"y")
    finally:
        os.umask(old)
    for name in ("t.txt", "m.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "t.txt"]  # no temp left


def test_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "out.txt"
    p.write_text("old")
    with pytest.raises(OSError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")
    assert p.read_text() == "old" and list(tmp_path.iterdir()) == [p]


def test_decoding_errors_name_the_exact_line(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"ok\r\nfine\n" + b"a" * 10000 + b"\ncaf\xe9\n")
    with open_text(p) as f, pytest.raises(InputError, match=r"x\.txt:4: not UTF-8"):
        list(f)
    with open_text(p) as f:
        assert f.readline() == "ok\n"  # CRLF read as LF
    with pytest.raises(InputError, match="no such file"):
        open_text(tmp_path / "absent.txt")


def test_second_process_cannot_take_a_locked_folder(tmp_path):
    code = (
        "import sys; from common.io import dir_lock\nwith dir_lock(sys.argv[1], 'exp dir'): pass\n"
    )
    with dir_lock(tmp_path, "exp dir"):
        r = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT
        )
        assert r.returncode != 0
        assert f"exp dir is in use by another process (pid {os.getpid()})" in r.stderr
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT)
    assert r.returncode == 0  # released with the holder


def test_recipe_logs_and_locks_are_git_ignored():
    paths = [
        "recipes/snips/log/asr-stages.log",
        "recipes/snips/.run.lock",
        "recipes/snips/.done/stage0",
    ]
    r = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    if r.returncode == 128:
        pytest.skip("not a git checkout")
    assert r.stdout.split() == paths
