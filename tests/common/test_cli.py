"""common.cli: user errors are one line, even when a library appends context lines."""

from __future__ import annotations

import pytest

from common.cli import cli_errors


def test_multi_line_library_error_is_one_line(capsys):
    # Lhotse re-raises an OSError with "[extra info] When calling: ..." lines appended
    err = FileNotFoundError(
        "[Errno 2] No such file or directory: 'data/fbank/feats-0.lca'\n"
        "[extra info] When calling: MonoCut.load_features(...)"
    )
    with pytest.raises(SystemExit) as e, cli_errors("decode-asr"):
        raise err
    assert e.value.code == 2
    out = capsys.readouterr().err
    assert (
        out == "decode-asr: error: [Errno 2] No such file or directory: 'data/fbank/feats-0.lca'\n"
    )
