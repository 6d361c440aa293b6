"""recipes/common/host.sh: cpu_has_bf16 reads the CPU flags (the SNIPS preset turns on bf16
autocast for both trainings only where it says yes)."""

import subprocess
from pathlib import Path

import pytest

from tests.recipes.presets import preset_vars

ROOT = Path(__file__).resolve().parents[2]
HOST_SH = ROOT / "recipes" / "common" / "host.sh"

_FLAGS = "fpu vme de pse avx2 avx512f avx512bw"


def _has_bf16(*args: str) -> bool:
    rc = subprocess.run(
        ["bash", "-c", '. "$0"; cpu_has_bf16 "$@"', str(HOST_SH), *args], timeout=30
    ).returncode
    assert rc in (0, 1)
    return rc == 0


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (_FLAGS, False),
        (_FLAGS + " avx512_bf16", True),
        ("avx512_bf16 " + _FLAGS, True),
        (_FLAGS + " amx_bf16 amx_tile", True),
        (_FLAGS + " avx512_bf16x", False),  # a longer flag name is not the flag
        (_FLAGS + " xavx512_bf16", False),
    ],
)
def test_cpu_has_bf16_reads_the_flags_line(tmp_path: Path, flags: str, expected: bool) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\n")
    assert _has_bf16(str(info)) is expected


def test_cpu_has_bf16_ignores_the_flag_outside_the_flags_line(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(f"model name\t: avx512_bf16 edition\nflags\t\t: {_FLAGS}\n")
    assert not _has_bf16(str(info))


def test_cpu_has_bf16_is_no_for_a_missing_file(tmp_path: Path) -> None:
    assert not _has_bf16(str(tmp_path / "absent"))


def test_snips_default_preset_chooses_bf16_by_host() -> None:
    """The preset's trainings follow cpu_has_bf16: bf16 with 7,000 RNN-T steps, or fp32 with
    3,400 steps; the tiny preset (tests) is fp32 everywhere."""
    conf = ROOT / "recipes" / "snips" / "conf"
    for steps, bf16 in (("7000", True), ("3400", False)):
        v = preset_vars(conf / "default.sh", bf16)
        asr_opts, lm_opts = v["asr_train_opts"], v["lm_opts"]
        assert f"--max-steps {steps}" in asr_opts
        assert ("--cpu-bf16 true" in asr_opts) is bf16
        assert ("--cpu-bf16 true" in lm_opts) is bf16
        tiny = preset_vars(conf / "tiny.sh", bf16)
        assert "bf16" not in f"{tiny['asr_train_opts']} {tiny['lm_opts']}"


def test_snips_one_train_engine_preset_changes_only_the_training_engines() -> None:
    """conf/one_train_engine.sh (the engine-count curve of issue 13): the default preset with
    espeak-ng alone in train, the same dev / test / held-out sets, a step budget added."""
    conf = ROOT / "recipes" / "snips" / "conf"
    default, one = preset_vars(conf / "default.sh"), preset_vars(conf / "one_train_engine.sh")
    changed = {k for k in default.keys() | one.keys() if default.get(k) != one.get(k)}
    assert changed == {"tts_plan", "asr_train_opts"}
    splits = dict(s.split("=", 1) for s in one["tts_plan"].split(";"))
    default_splits = dict(s.split("=", 1) for s in default["tts_plan"].split(";"))
    assert splits.pop("train") == "espeak-ng" and "flite" in default_splits.pop("train")
    assert splits == default_splits
    assert one["asr_train_opts"] == default["asr_train_opts"] + " --max-steps 2400"


def test_snips_two_train_engines_preset_changes_only_the_training_engines() -> None:
    """conf/two_train_engines.sh: the default preset with espeak-ng + flite:awb,rms in train
    (no MBROLA, no Pico), the same dev / test / held-out plan and every other option."""
    conf = ROOT / "recipes" / "snips" / "conf"
    default, two = preset_vars(conf / "default.sh"), preset_vars(conf / "two_train_engines.sh")
    changed = {k for k in default.keys() | two.keys() if default.get(k) != two.get(k)}
    assert changed == {"tts_plan"}
    splits = dict(s.split("=", 1) for s in two["tts_plan"].split(";"))
    default_splits = dict(s.split("=", 1) for s in default["tts_plan"].split(";"))
    assert splits.pop("train") == "espeak-ng,flite:awb,flite:rms"
    assert set(default_splits.pop("train").split(",")) == {
        "espeak-ng",
        "flite:awb",
        "flite:rms",
        "mbrola",
        "pico",
    }
    assert splits == default_splits


def test_snips_espeak_weight2_preset_changes_only_the_training_engine_weights() -> None:
    """conf/espeak_weight2.sh (experimental): the default preset's plan with espeak-ng weighted
    2 in train (2/5 of the draws), every other split and option the default's."""
    from data_prep.tts_plan import parse_tts_plan

    conf = ROOT / "recipes" / "snips" / "conf"
    default, w2 = preset_vars(conf / "default.sh"), preset_vars(conf / "espeak_weight2.sh")
    changed = {k for k in default.keys() | w2.keys() if default.get(k) != w2.get(k)}
    assert changed == {"tts_plan"}
    plan, default_plan = parse_tts_plan(w2["tts_plan"]), parse_tts_plan(default["tts_plan"])
    assert plan.splits == default_plan.splits  # a weight is not part of an item's identity
    weights = plan.weights("train")
    assert weights["espeak-ng"] == 2 and sum(weights.values()) == 5
    assert set(default_plan.weights("train").values()) == {1}


def test_snips_mbrola_accented_preset_changes_only_the_training_diphone_voices() -> None:
    """conf/mbrola_accented.sh (experimental): the default's plan with half of MBROLA's training
    share given to mbrola-accented; every engine's share, every other split and option the
    default's."""
    from data_prep.tts_plan import parse_tts_plan

    conf = ROOT / "recipes" / "snips" / "conf"
    default, acc = preset_vars(conf / "default.sh"), preset_vars(conf / "mbrola_accented.sh")
    changed = {k for k in default.keys() | acc.keys() if default.get(k) != acc.get(k)}
    assert changed == {"tts_plan"}
    plan, default_plan = parse_tts_plan(acc["tts_plan"]), parse_tts_plan(default["tts_plan"])
    assert {s: plan.splits[s] for s in plan.splits if s != "train"} == {
        s: default_plan.splits[s] for s in default_plan.splits if s != "train"
    }
    weights = plan.weights("train")
    assert weights.pop("mbrola") == weights.pop("mbrola-accented") == 0.5
    assert weights == {e: 1 for e in default_plan.weights("train") if e != "mbrola"}


def _pays(tmp_path: Path, flags: str, check_rc: int | None, env: dict | None = None):
    """cpu_bf16_pays with a CPU of ``flags`` and a stand-in check-bf16 exiting ``check_rc``
    (None: no check-bf16 on PATH); returns (status, stderr, calls of the stand-in)."""
    info = tmp_path / "cpuinfo"
    info.write_text(f"flags\t\t: {flags}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    check = bin_dir / "check-bf16"
    if check_rc is not None:
        check.write_text(f'#!/bin/bash\necho "$@" >> {calls}\nexit {check_rc}\n')
        check.chmod(0o755)
    elif check.exists():
        check.unlink()
    # host.sh's cpu_has_bf16, reading the file above instead of /proc/cpuinfo
    script = (
        '. "$0"; eval "$(declare -f cpu_has_bf16 | sed 1s/cpu_has_bf16/_flags/)"; '
        f'cpu_has_bf16() {{ _flags {info}; }}; cpu_bf16_pays "$@"'
    )
    run_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "work_dir": str(tmp_path / "wd")}
    r = subprocess.run(
        ["bash", "-c", script, str(HOST_SH)],
        capture_output=True,
        text=True,
        timeout=30,
        env=run_env | (env or {}),
    )
    n = len(calls.read_text().splitlines()) if calls.exists() else 0
    return r.returncode, r.stderr, n


def test_cpu_bf16_pays_measures_once_per_work_dir_and_keeps_the_answer(tmp_path: Path) -> None:
    cache = tmp_path / "wd" / "log" / ".cpu-bf16"
    # native bf16, the check says it pays: yes, cached; a second call does not measure again
    assert _pays(tmp_path, _FLAGS + " avx512_bf16", 0)[::2] == (0, 1)
    assert cache.read_text() == "yes\n"
    assert _pays(tmp_path, _FLAGS + " avx512_bf16", 1)[::2] == (0, 1)  # cached yes, no new call
    cache.unlink()
    # the check says it does not pay (the session-36 host): no, cached
    assert _pays(tmp_path, _FLAGS + " avx512_bf16", 1)[::2] == (1, 2)
    assert cache.read_text() == "no\n"
    cache.unlink()
    # no native bf16: no, without measuring
    assert _pays(tmp_path, _FLAGS, 0)[::2] == (1, 2)
    assert cache.read_text() == "no\n"


def test_cpu_bf16_pays_overrides_and_errors(tmp_path: Path) -> None:
    cache = tmp_path / "wd" / "log" / ".cpu-bf16"
    for value, status in (("true", 0), ("false", 1)):
        assert _pays(tmp_path, _FLAGS, 1, {"CPU_BF16": value})[::2] == (status, 0)
    assert not cache.exists()  # an override measures and caches nothing
    rc, err, _ = _pays(tmp_path, _FLAGS, 1, {"CPU_BF16": "maybe"})
    assert rc == 2 and "CPU_BF16 must be true, false or auto, got 'maybe'" in err
    # a check that cannot run is an error, not a silent "no"; nothing is cached
    rc, err, _ = _pays(tmp_path, _FLAGS + " avx512_bf16", None)
    assert rc == 2 and "check-bf16 failed (status 127)" in err and not cache.exists()
    cache.parent.mkdir(parents=True)
    cache.write_text("perhaps\n")
    rc, err, _ = _pays(tmp_path, _FLAGS, 0)
    assert rc == 2 and f"{cache} holds 'perhaps', not yes or no" in err
