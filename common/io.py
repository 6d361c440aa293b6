"""File I/O shared by every package: atomic writes, JSON lines, Kaldi text, ``InputError``.

Part of ``common``, the lowest layer of the toolkit: it imports no other package of ours.

Usage:
    from common.io import atomic_write, read_jsonl

    with atomic_write(path) as f:      # text; atomic_write(path, "wb") for bytes
        f.write("...")
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import tempfile
import typing
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """Bad user input: the message names the file and line or the utterance id."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or incompatible with the current code/config."""


def _umask_mode(mode: int = 0o666) -> int:
    """``mode`` filtered by the process umask (what ``open()`` would give a new file)."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def temp_path_beside(path: str | Path, suffix: str = ".tmp") -> Path:
    """A new empty temporary file in ``path``'s folder (created there so ``os.replace`` is atomic).

    Unlike :func:`tempfile.mkstemp` the file gets the permissions of an ordinary new file
    (``0666`` less the umask), so a renamed output is readable by the group like any other.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _umask_mode())
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    For writers that want a file name (``torch.save``, ``soundfile.write``, sentencepiece).
    The temporary name ends with ``suffix`` (default: ``path``'s own suffixes, so writers that
    choose a format by extension do the right thing).
    """
    path = Path(path)
    tmp = temp_path_beside(path, "".join(path.suffixes) if suffix is None else suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file beside ``path``; rename it over ``path`` only on success.

    A crash or exception leaves any earlier ``path`` untouched and no partial file behind.
    ``.gz`` paths are gzip-compressed reproducibly: no file name and mtime 0 in the header,
    so the same content always gives the same bytes.

    Args:
        path: the final file.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        encoding: text encoding (ignored for bytes).
    """
    path = Path(path)
    binary = "b" in mode
    with atomic_path(path, ".tmp") as tmp:
        if path.suffix != ".gz":
            with open(tmp, "wb" if binary else "w", encoding=None if binary else encoding) as f:
                yield f
            return
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as z,
        ):
            if binary:
                yield z
            else:
                with io.TextIOWrapper(z, encoding=encoding) as f:
                    yield f


def file_sha256(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


#: Duration of a text-only NLU supervision (no recording; Lhotse requires > 0): the NLU rows of
#: ``prepare-slurp``, of ``prepare-snips --render-nlu-only false`` and of ``pseudo-label``.
NLU_DURATION = 1.0


def write_manifest(path: str | Path, manifest: typing.Iterable[Any]) -> int:
    """Write a Lhotse manifest (any iterable of objects with ``to_dict()``) as JSON lines.

    Atomic and reproducible (see :func:`atomic_write`), unlike ``manifest.to_file`` whose gzip
    header carries the write time. Lhotse reads the result with ``load_manifest``.
    """
    return write_jsonl(path, (item.to_dict() for item in manifest))


class _CheckedTextReader:
    """A read-only UTF-8 text file whose errors name the file and line (``InputError``).

    Lines are decoded one at a time from bytes, so a bad byte is reported on its own line
    (a text-mode file decodes 8 KiB chunks and fails on the first line of the chunk).
    ``\r\n`` line ends are read as ``\n``.
    """

    def __init__(self, f: typing.BinaryIO, path: Path):
        self._f = f
        self.path = path
        self.lineno = 0

    def readline(self) -> str:
        where = f"{self.path}:{self.lineno + 1}"
        try:
            raw = self._f.readline()
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise InputError(f"{where}: corrupt or truncated compressed file ({e})") from None
        if not raw:
            return ""
        self.lineno += 1
        if self.lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark
            raw = raw[3:]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(
                f"{where}: not UTF-8 text ({e.reason} at byte {e.start} of the line); "
                "convert the file to UTF-8"
            ) from None
        return line[:-2] + "\n" if line.endswith("\r\n") else line

    def __iter__(self) -> Iterator[str]:
        while line := self.readline():
            yield line

    def read(self) -> str:
        return "".join(iter(self))

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> _CheckedTextReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_text(path: str | Path) -> _CheckedTextReader:
    """Open a UTF-8 text file for reading, transparently decompressing ``.gz``.

    Raises:
        InputError: the file is missing or a directory; while reading, a line that is not
            UTF-8 or a truncated/corrupt gzip stream (naming file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix == ".gz":
        return _CheckedTextReader(gzip.open(path, "rb"), path)
    return _CheckedTextReader(open(path, "rb"), path)


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` from a JSON-lines file (``.gz`` allowed).

    Raises:
        InputError: naming the file and line of a malformed line.
    """
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, obj


def read_kaldi_text(path: str | Path) -> dict[str, str]:
    """A Kaldi ``text``-style file: ``utt_id word word ...`` per line -> ``{utt_id: "words"}``."""
    out: dict[str, str] = {}
    with open_text(path) as f:
        for line in f:
            parts = line.rstrip("\n").split(maxsplit=1)
            if parts:
                out[parts[0]] = parts[1] if len(parts) > 1 else ""
    return out


def write_jsonl(path: str | Path, records: typing.Iterable[dict]) -> int:
    """Atomically write records as JSON lines; returns how many were written."""
    n = 0
    with atomic_write(path) as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    return n


@contextlib.contextmanager
def dir_lock(folder: str | Path, what: str = "this folder") -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``folder/.lock`` for the duration of the block.

    A second process that wants the same folder (two trainers on one exp dir, two rescoring
    runs into one out dir) fails at once with an ``InputError`` naming the folder and the pid
    that holds it, instead of interleaving its outputs with the first. The lock is released by
    the kernel when the holder exits, even on ``kill -9``, so a stale lock never blocks a re-run.

    Args:
        folder: the folder to lock (created if missing).
        what: how the folder is named in the error ("exp dir", "output folder").
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, _umask_mode())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise InputError(
                f"{folder}: {what} is in use by another process (pid {holder}); "
                "wait for it to finish or stop it, then re-run"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)
