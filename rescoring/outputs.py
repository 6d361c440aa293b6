"""Output folders and all-or-nothing output sets with a manifest; readers verify the sets.

Each entry point of this package writes its outputs as one *set*: ``rescore-nbest`` the rescored
n-best, the 1-best and the run info of one set; ``tune-rescoring`` ``tuned.json``, the sweep and
the dev outputs; ``score-wer`` the scoring files of one set and system. A run

1. holds the output folder's lock (:func:`common.io.dir_lock`) from start to end, so a second
   run into the same folder fails at once (naming the folder and the holder's pid) instead of
   mixing its files with the first run's;
2. writes every file of the set into a staging folder inside the output folder;
3. only when all were written, withdraws those names from older manifests, renames the files
   into place and writes the set manifest ``set-<name>.json`` last: each file's name and
   sha256, the producer and the run's parameters.

An error, a full disk or a crash before step 3 leaves the previous outputs as they were; a crash
inside step 3 leaves files that no manifest lists. Readers call :func:`verify_output`: one of
our output files (:data:`OUR_OUTPUTS`) is read only when a manifest lists it and every file of
that manifest still matches its sha256, so files of different or unfinished runs are never
combined. A file of another name is read as it is.

Usage:
    with output_folder(out_dir):                                    # lock for the whole run
        ...
        with OutputSet(out_dir, "rescore-test", "rescore-nbest", params) as out:
            write_jsonl(out.dir / "onebest-test.jsonl.gz", rows)     # staged
        # here: renamed into out_dir, set-rescore-test.json written
    verify_output(out_dir / "onebest-test.jsonl.gz")                 # in a reader
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.io import InputError, atomic_write, dir_lock, open_text, temp_path_beside
from common.io import file_sha256 as sha256  # the name rescoring/ imports

MANIFEST_PREFIX = "set-"
STAGING_PREFIX = ".staging-"

#: Names of the files this package writes (fnmatch patterns) -> the entry point that writes them.
#: Readers accept such a file only as part of a complete, consistent set (:func:`verify_output`).
OUR_OUTPUTS: dict[str, str] = {
    "rescored-*.jsonl.gz": "rescore-nbest",
    "onebest-*.jsonl.gz": "rescore-nbest",
    "rescore-*.json": "rescore-nbest",
    "tuned.json": "tune-rescoring",
    "sweep-*.tsv": "tune-rescoring",
    "metrics-*.json": "score-wer",
    "per-utt-*.jsonl.gz": "score-wer",
}

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def check_name_part(value: str, option: str) -> str:
    """A set or system name that becomes part of file names (``--set-name``, ``--system``)."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise InputError(
            f"{option} {value!r}: must be a non-empty name of letters, digits and '._+-' "
            "(it becomes part of the output file names)"
        )
    return value


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and check a file can be created in it (before any work).

    Raises:
        InputError: one line naming the folder (read-only, a file in the way, no permission).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temp_path_beside(folder / "write-test").unlink()
    except OSError as e:
        raise InputError(
            f"{folder}: cannot write to the output folder ({e.strerror or e})"
        ) from None
    return folder


@contextlib.contextmanager
def output_folder(out_dir: str | Path) -> Iterator[Path]:
    """Create ``out_dir`` if needed, check it is writable and hold its lock for the block.

    Staging folders left by a killed run are removed (the lock proves no run is using them).

    Raises:
        InputError: the folder cannot be created or written, or another run holds it.
    """
    out_dir = check_writable(out_dir)
    with dir_lock(out_dir, "output folder"):
        for stale in out_dir.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
        yield out_dir


def _load_manifest(path: Path) -> dict[str, Any]:
    def bad(why: str) -> InputError:
        return InputError(
            f"{path}: corrupt set manifest ({why}); delete it and re-run the stage that wrote "
            f"{path.parent}"
        )

    with open_text(path) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise bad(f"invalid JSON: {e.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("producer"), str):
        raise bad("no 'producer'")
    files = data.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _SHA256_RE.match(v) for k, v in files.items()
    ):
        raise bad("'files' must map file names to sha256 digests")
    return data


def _manifests(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob(f"{MANIFEST_PREFIX}*.json") if p.is_file())


def producer_of(name: str) -> str | None:
    """The entry point that writes files called ``name``, or None for a name that is not ours."""
    return next((prog for pat, prog in OUR_OUTPUTS.items() if fnmatch.fnmatchcase(name, pat)), None)


def verify_output(path: str | Path) -> None:
    """Check that ``path`` belongs to a complete output set whose files all match the manifest.

    A file no manifest lists is accepted only if its name is not one of :data:`OUR_OUTPUTS`
    (another tool's file, read as it is).

    Raises:
        InputError: naming ``path``, the manifest and the stage to re-run.
    """
    path = Path(path)
    folder = path.parent
    for m in _manifests(folder):
        data = _load_manifest(m)
        if path.name in data["files"]:
            break
    else:
        producer = producer_of(path.name)
        if producer is None:
            return
        raise InputError(
            f"{path}: no set manifest ({MANIFEST_PREFIX}*.json) in {folder} lists this file: the "
            f"run that wrote it did not finish (or predates set manifests); re-run {producer}"
        )
    for name, digest in sorted(data["files"].items()):
        p = folder / name
        if not p.is_file():
            raise InputError(
                f"{path}: incomplete output set: {name}, listed in {m}, is missing; "
                f"re-run {data['producer']}"
            )
        if sha256(p) != digest:
            raise InputError(
                f"{path}: the files of {m} were written by different runs ({name} is not the "
                f"file the manifest lists); re-run {data['producer']}"
            )


class OutputSet:
    """Files written together: staged, then renamed into place, then the manifest written last.

    Write every file into ``self.dir`` (a staging folder inside ``out_dir``) under its final
    name; leaving the ``with`` block without an exception publishes the set. Call it inside
    :func:`output_folder`, which holds the folder's lock.

    Args:
        out_dir: the output folder.
        name: the set's name; the manifest is ``out_dir/set-<name>.json``.
        producer: the entry point (named in readers' errors: "re-run <producer>").
        params: the run's parameters, stored in the manifest (JSON; paths become strings).
    """

    def __init__(self, out_dir: str | Path, name: str, producer: str, params: dict[str, Any]):
        self.out_dir = Path(out_dir)
        self.manifest = self.out_dir / f"{MANIFEST_PREFIX}{name}.json"
        self.producer = producer
        self.params = params
        self.dir = self.out_dir  # replaced by the staging folder in __enter__

    def __enter__(self) -> OutputSet:
        self.dir = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out_dir))
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._commit()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def _commit(self) -> None:
        names = sorted(p.name for p in self.dir.iterdir() if not p.name.startswith("."))
        if not names:
            raise RuntimeError(f"{self.manifest}: output set with no files")
        files = {n: sha256(self.dir / n) for n in names}
        # No manifest may vouch for a file while it is being replaced: retire ours, and take
        # these names out of the other sets of the folder (their other files stay valid).
        for m in _manifests(self.out_dir):
            if m == self.manifest:
                m.unlink()
                continue
            data = _load_manifest(m)
            keep = {k: v for k, v in data["files"].items() if k not in files}
            if len(keep) == len(data["files"]):
                continue
            if keep:
                with atomic_write(m) as f:
                    json.dump({**data, "files": keep}, f, indent=2, sort_keys=True)
                    f.write("\n")
            else:
                m.unlink()
        for n in names:
            os.replace(self.dir / n, self.out_dir / n)
        with atomic_write(self.manifest) as f:
            json.dump(
                {"producer": self.producer, "files": files, "params": self.params},
                f,
                indent=2,
                sort_keys=True,
                default=str,
            )
            f.write("\n")
