"""common/bf16_check.py (check-bf16): the decision from measured times, and the command's
report and status. The measurement itself is timing: no test asserts what it decides."""

import json

import pytest

from common.bf16_check import decide, main, measure
from common.io import InputError
from tests.conftest import NATIVE_BF16


def test_decide_compares_the_summed_seconds_with_the_bound():
    times = {"lstm_lm": {"fp32": 2.0, "bf16": 1.0}, "ffn": {"fp32": 1.0, "bf16": 1.0}}
    r = decide(times, 1.4)
    assert r["speedup"] == {"lstm_lm": 2.0, "ffn": 1.0, "all": 1.5} and r["pays"]
    assert not decide(times, 1.6)["pays"]
    slow = {"lstm_lm": {"fp32": 0.41, "bf16": 0.60}, "ffn": {"fp32": 0.11, "bf16": 0.17}}
    assert not decide(slow)["pays"]  # the session-36 host: 0.68x
    for bad in ({}, {"x": {"fp32": 1.0}}, {"x": {"fp32": 1.0, "bf16": 0.0}}):
        with pytest.raises(ValueError):
            decide(bad)


@NATIVE_BF16
def test_measure_times_every_workload_in_both_dtypes():
    t = measure(rounds=1, steps=1)
    assert set(t) == {"lstm_lm", "ffn"}
    assert all(set(v) == {"fp32", "bf16"} and min(v.values()) > 0 for v in t.values())


@NATIVE_BF16
def test_command_writes_its_report_and_exits_with_the_decision(tmp_path, capsys):
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as e:
        main(["--rounds", "1", "--steps", "1", "--min-speedup", "1e-9", "--json", str(out)])
    assert e.value.code == 0  # any host is 1e-9 times faster
    report = json.loads(out.read_text())
    assert report["pays"] and report == json.loads(capsys.readouterr().out)
    with pytest.raises(SystemExit) as e:
        main(["--rounds", "1", "--steps", "1", "--min-speedup", "1e9"])
    assert e.value.code == 1
    with pytest.raises(SystemExit) as e:
        main(["--rounds", "0"])
    assert e.value.code == 2


def test_without_native_bf16_the_answer_is_no_without_measuring(tmp_path, capsys, monkeypatch):
    """On a CPU whose oneDNN has no bf16 kernels (an "AMD EPYC" with AVX2 only, session 37) an
    LSTM under bf16 autocast fails: check-bf16 says no (exit 1) and names why."""
    import common.bf16_check as mod

    monkeypatch.setattr(mod, "onednn_bf16", lambda: False)
    monkeypatch.setattr(mod, "measure", lambda *a, **k: pytest.fail("measured"))
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as e:
        main(["--json", str(out)])
    assert e.value.code == 1
    report = json.loads(out.read_text())
    assert report["pays"] is False and "no native bf16" in report["reason"]
    with pytest.raises(InputError, match="--cpu-bf16 true: this CPU has no native bf16"):
        mod.require_cpu_bf16()
