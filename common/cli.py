"""Typed command lines for every entry point: dataclass <-> argparse, logging, clean errors.

Part of ``common``, the lowest layer of the toolkit: it imports no other package of ours.

Usage:
    def main(argv=None):
        run_cli("compute-fbank", FbankOptions, compute_fbank, __doc__, argv)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import logging
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from common.env import env_info
from common.io import CheckpointError, InputError, atomic_write

LOG_FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"
# The first line of a ``cmd.sh`` (ESPnet style), and again before commands run from another folder
CMD_HEADER = "# Exact commands, run from "

T = TypeVar("T")


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    """Configure root logging icefall-style (time, level, file:line), optionally also to a file."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers, force=True)


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


#: Exceptions that mean bad input or a bad environment, not a bug: every entry point reports them
#: as one line ``prog: error: ...`` naming the file (line, utterance id) and exits with status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    InputError,
    CheckpointError,
    OSError,
    UnicodeError,
    csv.Error,
)

#: Exit status of an entry point that stopped on bad input (argparse uses 2 for bad options too).
EXIT_BAD_INPUT = 2


def describe_error(e: BaseException) -> str:
    """One line for a user-facing error, naming the file where the exception knows it."""
    if isinstance(e, InputError | CheckpointError):
        return str(e)
    if isinstance(e, OSError):
        what = e.strerror or str(e) or type(e).__name__
        if e.filename is not None and e.filename2 is not None:
            return f"{e.filename} -> {e.filename2}: {what}"
        if e.filename is not None:
            return f"{e.filename}: {what}"
        return what
    if isinstance(e, UnicodeDecodeError):
        return f"input is not {e.encoding} text ({e.reason} at byte {e.start})"
    if isinstance(e, csv.Error):
        return f"malformed CSV/TSV input ({e})"
    return f"{type(e).__name__}: {e}"


@contextlib.contextmanager
def cli_errors(prog: str, extra: tuple[type[BaseException], ...] = ()):
    """Turn :data:`USER_ERRORS` (and ``extra``) raised inside into ``prog: error: ...``, exit 2.

    Internal bugs (any other exception) still show their traceback. Ctrl-C exits 130 quietly.
    """
    try:
        yield
    except USER_ERRORS + extra as e:
        logging.debug("%s failed", prog, exc_info=True)
        # one line: libraries append context lines to a message (Lhotse's "[extra info] ...")
        first = (describe_error(e).strip().splitlines() or [type(e).__name__])[0]
        print(f"{prog}: error: {first}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def run_cli(
    prog: str,
    config_cls: type[T],
    run: typing.Callable[[T], Any],
    doc: str,
    argv: list[str] | None = None,
    errors: tuple[type[Exception], ...] = (),
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
        errors: exception types reported as ``prog: error: ...`` (exit status 2) besides
            :data:`USER_ERRORS`.
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
    with cli_errors(prog, errors):
        cfg = dataclass_from_args(config_cls, args, base=presets[args.preset] if presets else None)
        logging.info("%s: %s", prog, cfg)
        return run(cfg)


@dataclass(frozen=True)
class TrainCli:
    """The command line of a trainer: a training and a model config (one ``--option`` per field,
    in two groups) over a preset that may depend on the parsed options (``train-lm``'s presets
    differ per ``--mode``). Like :func:`common.cli.run_cli`: ``--help`` shows the defaults, bad
    input ends with one line ``prog: error: ...`` and exit status 2.
    """

    prog: str
    doc: str
    train_cls: type
    model_cls: type
    presets: tuple[str, ...]
    #: (preset name, parsed options) -> (model config, training config) to override
    preset_configs: Callable[[str, argparse.Namespace], tuple[Any, Any]]
    preset_help: str = "size preset (default: default)"
    epilog: str | None = None

    def parser(self) -> argparse.ArgumentParser:
        p = cli_parser(self.doc, self.prog, self.epilog)
        p.add_argument("--preset", choices=self.presets, default="default", help=self.preset_help)
        add_dataclass_args(p, self.train_cls, group_title="training")
        add_dataclass_args(p, self.model_cls, group_title="model")
        return p

    def configs(self, argv: Sequence[str] | None = None) -> tuple[Any, Any]:
        """(model config, training config): the preset overridden by the options given."""
        return self._build(self.parser().parse_args(argv))

    def _build(self, args: argparse.Namespace) -> tuple[Any, Any]:
        model_base, train_base = self.preset_configs(args.preset, args)
        return (
            dataclass_from_args(self.model_cls, args, model_base),
            dataclass_from_args(self.train_cls, args, train_base),
        )

    def main(self, run: Callable[[Any, Any, list[str]], Any], argv: Sequence[str] | None) -> Any:
        """Parse ``argv`` (default ``sys.argv[1:]``) and call ``run(model_cfg, train_cfg,
        command)`` with ``command = [prog, *argv]`` (for ``cmd.sh``)."""
        argv = list(sys.argv[1:] if argv is None else argv)
        setup_logging()
        args = self.parser().parse_args(argv)
        with cli_errors(self.prog):
            model_cfg, train_cfg = self._build(args)
            return run(model_cfg, train_cfg, [self.prog, *argv])


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
