"""Small helpers shared by every package: atomic writes, logging, run metadata, typed CLIs.

This is the lowest layer of the toolkit (no torch import), so ``asr``, ``lm`` and
``rescoring`` can all use it.

Usage:
    from data_prep.utils import atomic_write, setup_logging, add_dataclass_args

    with atomic_write(path) as f:      # text; atomic_write(path, "wb") for bytes
        f.write("...")
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import importlib.metadata
import json
import logging
import os
import subprocess
import sys
import tempfile
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

LOG_FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"

T = TypeVar("T")


class InputError(ValueError):
    """Bad user input: the message names the file and line or the utterance id."""


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    """Configure root logging icefall-style (time, level, file:line), optionally also to a file."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers, force=True)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file beside ``path``; rename it over ``path`` only on success.

    A crash or exception leaves any earlier ``path`` untouched and no partial file behind.
    ``.gz`` paths are gzip-compressed.

    Args:
        path: the final file.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        encoding: text encoding (ignored for bytes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    binary = "b" in mode
    try:
        if path.suffix == ".gz":
            f = gzip.open(tmp, "wb" if binary else "wt", encoding=None if binary else encoding)
        else:
            f = open(tmp, "wb" if binary else "w", encoding=None if binary else encoding)
        with f:
            yield f
            f.flush()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def open_text(path: str | Path):
    """Open a text file for reading, transparently decompressing ``.gz``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


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


def git_sha() -> str:
    """The current commit of the toolkit's checkout (``+dirty`` if modified), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def env_info() -> dict[str, str]:
    """Git sha and library versions, saved in every experiment folder and checkpoint."""
    info = {"git_sha": git_sha(), "python": sys.version.split()[0]}
    for pkg in ("torch", "torchaudio", "lhotse", "sentencepiece", "kaldifst", "numpy"):
        try:
            info[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            info[pkg] = "not installed"
    return info


# ---------------------------------------------------------------------------------------------
# Typed configuration <-> argparse


def _parse_bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "y", "on"):
        return True
    if s.lower() in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {s!r}")


def _arg_type(tp: Any):
    """Map a dataclass field annotation to (argparse type, nargs)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _arg_type(non_none[0])
    if origin in (list, tuple):
        inner = args[0] if args else str
        return (inner if inner in (int, float, str, Path) else str), "+"
    if tp is bool:
        return _parse_bool, None
    if tp in (int, float, str):
        return tp, None
    if tp is Path:
        return Path, None
    return str, None


def add_dataclass_args(
    parser: argparse.ArgumentParser, cls: type, prefix: str = "", group_title: str | None = None
) -> None:
    """Add one ``--option`` per field of dataclass ``cls`` (field docs come from ``metadata['help']``).

    Defaults are left as ``None`` in argparse so that :func:`dataclass_from_args` can tell an
    option the user gave from a preset's value.
    """
    group = parser.add_argument_group(group_title or cls.__name__)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, nargs = _arg_type(hints[f.name])
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        help_text = f.metadata.get("help", "")
        group.add_argument(
            f"--{prefix}{f.name.replace('_', '-')}",
            dest=f"{prefix.replace('-', '_')}{f.name}",
            type=tp,
            nargs=nargs,
            default=None,
            help=f"{help_text} (default: {default})",
        )


def dataclass_from_args(
    cls: type[T], args: argparse.Namespace, base: T | None = None, prefix: str = ""
) -> T:
    """Build ``cls`` from a preset ``base`` (or the class defaults) overridden by given options."""
    base = base if base is not None else cls()
    overrides = {}
    for f in dataclasses.fields(cls):
        v = getattr(args, f"{prefix.replace('-', '_')}{f.name}", None)
        if v is not None:
            if isinstance(getattr(base, f.name), tuple):
                v = tuple(v)
            overrides[f.name] = v
    return dataclasses.replace(base, **overrides)


def cli_parser(
    doc: str, prog: str | None = None, epilog: str | None = None
) -> argparse.ArgumentParser:
    """An entry point's parser: the docstring's first paragraph as description, all of it
    (or ``epilog``) after the options."""
    return argparse.ArgumentParser(
        prog=prog,
        description=doc.split("\n\n")[0],
        epilog=doc if epilog is None else epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def run_cli(
    prog: str,
    config_cls: type[T],
    run: typing.Callable[[T], Any],
    doc: str,
    argv: list[str] | None = None,
    errors: tuple[type[Exception], ...] = (InputError,),
    presets: dict[str, T] | None = None,
    preset_help: str = "",
    group_title: str | None = None,
) -> Any:
    """The ``main()`` of an entry point: typed options from ``config_cls``, logging, clean errors.

    Args:
        prog: the console-script name (used in ``--help`` and error messages).
        config_cls: a dataclass; one ``--option`` per field.
        run: called with the built config.
        doc: the module docstring (first paragraph = description, all of it = epilog).
        argv: arguments (default ``sys.argv[1:]``).
        errors: exception types reported as ``prog: error: ...`` and exit status 1.
        presets: named base configs; adds ``--preset`` (default ``default``), and the options
            given override the chosen preset's values.
        preset_help: help text of ``--preset``.
        group_title: title of the options group in ``--help`` (default: the class name).
    """
    setup_logging()
    parser = cli_parser(doc, prog)
    if presets:
        parser.add_argument("--preset", choices=tuple(presets), default="default", help=preset_help)
    add_dataclass_args(parser, config_cls, group_title=group_title)
    args = parser.parse_args(argv)
    cfg = dataclass_from_args(config_cls, args, base=presets[args.preset] if presets else None)
    logging.info("%s: %s", prog, cfg)
    try:
        return run(cfg)
    except errors as e:
        raise SystemExit(f"{prog}: error: {e}") from None


def save_config(path: str | Path, config: Any, extra: dict | None = None) -> None:
    """Write a dataclass config plus :func:`env_info` as pretty JSON, atomically."""
    payload = {"config": _to_jsonable(dataclasses.asdict(config)), "env": env_info()}
    if extra:
        payload.update(extra)
    with atomic_write(path) as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")


def _to_jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _to_jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_to_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x
