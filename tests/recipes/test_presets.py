"""Every recipe preset (recipes/<corpus>/conf/*.sh) passes options that its stages' entry points
accept: each ``*_opts`` string is parsed by the parser of the entry point run.sh hands it to
(train-asr, train-lm, decode-asr and tune-context, pseudo-label-nlu, extract-slot-lexicon,
rescore-systems, prepare-slurp), for both answers of ``cpu_has_bf16``. A misspelt option in a
preset otherwise fails an hour into a run (SLURP's presets cannot be run here at all)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

import common.cli
from tests.recipes.presets import preset_vars

ROOT = Path(__file__).resolve().parents[2]
PRESETS = sorted(ROOT.glob("recipes/*/conf/*.sh"))
#: preset variable -> the modules of the entry points run.sh gives it to
RUN_CLI_OPTS = {
    "decode_opts": ("asr.decode", "asr.tune_context"),
    "pseudo_opts": ("lm.pseudo_label",),
    "lexicon_opts": ("data_prep.slot_lexicon",),
    "tune_opts": ("rescoring.systems",),
    "prepare_opts": ("data_prep.slurp",),
}


def _parsed_by_run_cli(module: str, argv: list[str], monkeypatch) -> object:
    """The config the entry point of ``module`` (a ``run_cli`` main) builds from ``argv``."""
    import importlib

    mod = importlib.import_module(module)
    got = []

    def parse_only(prog, cls, run, doc, argv=None, *args, **kw):
        return common.cli.run_cli(prog, cls, got.append, doc, argv, *args, **kw)

    monkeypatch.setattr(mod, "run_cli", parse_only)
    mod.main(argv)
    [cfg] = got
    return cfg


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: f"{p.parts[-3]}/{p.name}")
@pytest.mark.parametrize("bf16", [True, False], ids=["bf16", "fp32"])
def test_preset_options_are_accepted_by_their_entry_points(preset, bf16, monkeypatch):
    from asr.train import CLI as ASR_CLI
    from lm.train import CLI as LM_CLI

    v = preset_vars(preset, bf16)
    if v.get("asr_preset"):
        _, train_cfg = ASR_CLI.configs(
            ["--preset", v["asr_preset"], *shlex.split(v.get("asr_train_opts", ""))]
        )
        train_cfg.validate()
    if v.get("lm_preset"):
        LM_CLI.configs(["--preset", v["lm_preset"], *shlex.split(v.get("lm_opts", ""))])
    checked = 0
    for name, modules in RUN_CLI_OPTS.items():
        if not v.get(name):
            continue
        for module in modules:
            cfg = _parsed_by_run_cli(module, shlex.split(v[name]), monkeypatch)
            assert cfg is not None
            checked += 1
    assert checked >= 3  # decode, tune and lexicon options at least


def test_a_misspelt_preset_option_fails_the_check(tmp_path, monkeypatch):
    """The check above can fail: an option no entry point has, or a bad value."""
    bad = tmp_path / "bad.sh"
    bad.write_text('decode_opts="--method modified_beam --beem 8"\n')
    with pytest.raises(SystemExit) as e:
        _parsed_by_run_cli("asr.decode", shlex.split(preset_vars(bad)["decode_opts"]), monkeypatch)
    assert e.value.code == 2
    from asr.train import CLI as ASR_CLI

    with pytest.raises(SystemExit):
        ASR_CLI.configs(["--preset", "default", "--max-steps", "many"])
