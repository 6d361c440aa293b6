"""common.env: run metadata and the source fingerprint that keys cached outputs."""

from __future__ import annotations

import importlib

import pytest

from common.env import env_info, source_fingerprint


def _package(root, name: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_fingerprint_changes_with_the_code_only(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _package(tmp_path, "fp_pkg", {"__init__.py": "", "a.py": "X = 1\n", "sub/b.py": "Y = 2\n"})
    importlib.invalidate_caches()
    first = source_fingerprint("fp_pkg")
    assert len(first) == 16 and first == source_fingerprint("fp_pkg")
    (tmp_path / "fp_pkg" / "notes.txt").write_text("not code")  # only *.py counts
    assert source_fingerprint("fp_pkg") == first
    (tmp_path / "fp_pkg" / "sub" / "b.py").write_text("Y = 3\n")  # a nested module edited
    second = source_fingerprint("fp_pkg")
    assert second != first
    (tmp_path / "fp_pkg" / "sub" / "b.py").write_text("Y = 2\n")
    assert source_fingerprint("fp_pkg") == first
    # the same content under another file name is other code
    (tmp_path / "fp_pkg" / "a.py").rename(tmp_path / "fp_pkg" / "c.py")
    assert source_fingerprint("fp_pkg") != first


def test_fingerprint_of_the_toolkit_and_errors():
    assert source_fingerprint("asr", "common") != source_fingerprint("common")
    with pytest.raises(ValueError, match="'no_such_pkg_xyz'"):
        source_fingerprint("no_such_pkg_xyz")
    with pytest.raises(ValueError, match="'json.decoder'"):  # a module, not a package
        source_fingerprint("json.decoder")


def test_env_info_names_the_libraries():
    info = env_info()
    assert {"git_sha", "python", "torch", "lhotse"} <= info.keys()
