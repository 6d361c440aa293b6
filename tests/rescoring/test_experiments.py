"""The experiment matrix: the recipe's file loads; every mistake names the file and the key."""

from pathlib import Path

import pytest

from common.io import InputError
from rescoring.experiments import load_experiments

SNIPS = Path(__file__).resolve().parents[2] / "recipes/snips/conf/systems.toml"

GOOD = """
headline = "b"
first_pass = "a"
oracle = "o"
[systems.a]
label = "A"
[systems.o]
label = "O"
select = "oracle"
[systems.b]
label = "B"
lm_checkpoint = "exp/lm/b.pt"
"""


def test_snips_matrix_loads():
    e = load_experiments(SNIPS)
    assert e.headline == "pretrained_multitask_rwm" and e.first_pass == "rnnt_1best"
    assert e.rescoring_systems == [
        "lm",
        "multitask_linear",
        "multitask_rwm",
        "pretrained_multitask_rwm",
        "pretrained_multitask_rwm_sample",
        "pretrained_multitask_rwm_pseudo",
        "biased_lm",
        "biased_pretrained_multitask_rwm",
        "nlu_features",
        "biased_nlu_features",
    ]
    assert e.systems["nlu_features"].kind == "loglinear"
    # issue 14: every LM system is seeded; one checkpoint labels the chosen hypotheses
    assert e.seeds == (42, 43, 44) and "{seed}" not in str(e.nlu_checkpoint)
    assert all(e.systems[n].seeded for n in e.rescoring_systems)
    assert load_experiments(SNIPS, (42, 43)).seeds == (42, 43)  # the recipe's lm_seeds
    assert ("multitask_linear", "multitask_rwm") in [(c.a, c.b) for c in e.comparisons]
    # issue 12's systems: names fixed by results.json's contract
    biased = {n: s.nbest_dir for n, s in e.systems.items() if s.nbest_dir}
    assert set(biased) == {
        "biased_1best",
        "biased_oracle",
        "biased_gold_1best",
        "biased_global_1best",
        "biased_lm",
        "biased_pretrained_multitask_rwm",
        "biased_nlu_features",
    }
    assert e.systems["biased_oracle"].select == "oracle"
    assert biased["biased_1best"] == biased["biased_oracle"] == biased["biased_lm"]
    assert {(t.system, t.metric) for t in e.limits} >= {
        ("biased_1best", "rare_wer"),
        ("biased_oracle", "rare_wer"),
    }
    assert {(t.against, t.metric) for t in e.targets} >= {
        ("lm", "rare_wer"),
        ("rnnt_1best", "rare_wer"),
    }


def test_minimal_matrix(tmp_path):
    p = tmp_path / "systems.toml"
    p.write_text(GOOD)
    e = load_experiments(p)
    assert list(e.systems) == ["a", "o", "b"] and e.rescoring_systems == ["b"]
    assert e.sets == ("dev", "test") and e.tune_set == "dev"


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda s: s.replace('label = "B"', 'lable = "B"'),
            r"\[systems.b\]: unknown key\(s\) lable",
        ),
        (lambda s: s.replace('headline = "b"', 'headline = "zz"'), "headline names 'zz'"),
        (lambda s: s.replace('select = "oracle"', 'select = "best"'), r"\[systems.o\] select"),
        (lambda s: s.replace('select = "oracle"', ""), 'must have select = "oracle"'),
        (lambda s: s.replace('first_pass = "a"\n', ""), "missing first_pass"),
        (lambda s: s.replace('label = "A"', "label = 3"), r"\[systems.a\] label: expected str"),
        (lambda s: 'comparisons = [{ a = "a", b = "q" }]\n' + s, r"comparisons\[0\].b names 'q'"),
        (lambda s: 'targets = [{ against = "a", metric = "cer" }]\n' + s, r"targets\[0\] metric"),
        (lambda s: 'tune_set = "train"\n' + s, "tune_set 'train' is not one of sets"),
        (lambda s: s + "\n[oops", "invalid TOML"),
        (lambda s: "extra = 1\n" + s, r"unknown key\(s\) extra"),
        (lambda s: "comparison_note = 3\n" + s, "comparison_note: expected str"),
        (lambda s: s.replace("[systems.a]", "[systems.'a b']"), r"\[systems.a b\]: a system name"),
        (
            lambda s: s.replace(
                'lm_checkpoint = "exp/lm/b.pt"', 'lm_checkpoint = "x"\nselect = "oracle"'
            ),
            "with an lm_checkpoint is tuned",
        ),
        (lambda s: 'sets = ["dev", "dev"]\n' + s, "a set is named twice"),
        (lambda s: 'sets = ["dev", "te st"]\n' + s, r"sets\[1\]: a set name"),
    ],
)
def test_bad_matrix_names_file_and_key(tmp_path, edit, message):
    p = tmp_path / "systems.toml"
    p.write_text(edit(GOOD))
    with pytest.raises(InputError, match=message) as e:
        load_experiments(p)
    assert str(p) in str(e.value)


def test_eval_set_and_note(tmp_path):
    p = tmp_path / "systems.toml"
    p.write_text('sets = ["dev", "test", "other"]\ncomparison_note = "ablations last"\n' + GOOD)
    e = load_experiments(p)
    assert e.eval_set == "other" and e.comparison_note == "ablations last"
    p.write_text('sets = ["dev"]\n' + GOOD)
    assert load_experiments(p).eval_set == "dev"
    assert load_experiments(SNIPS).eval_set == "test"


def test_missing_matrix(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_experiments(tmp_path / "none.toml")
