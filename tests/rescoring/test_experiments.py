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
        "lm_features",
        "biased_nlu_features",
        "fused_lm",
        "fused_pretrained_multitask_rwm",
        "fused_nlu_features",
        "fused_lm_features",
    ]
    assert e.systems["nlu_features"].kind == "loglinear"
    # the ablations weight the same features but the NLU ones, with the same tuner
    for full, ablation in (
        ("nlu_features", "lm_features"),
        ("fused_nlu_features", "fused_lm_features"),
    ):
        a, b = e.systems[full], e.systems[ablation]
        assert a.features is None and not {"intent_conf", "slot_in_lexicon"} & set(b.features)
        assert (a.objective, a.feature_lms, a.nbest_dir) == (
            b.objective,
            b.feature_lms,
            b.nbest_dir,
        )
        assert a.objective == "mwer" and (ablation, full) in [(c.a, c.b) for c in e.comparisons]
    # issue 14: every LM system is seeded; one checkpoint labels the chosen hypotheses
    assert e.seeds == (42, 43, 44) and "{seed}" not in str(e.nlu_checkpoint)
    assert all(e.systems[n].seeded for n in e.rescoring_systems)
    assert load_experiments(SNIPS, (42, 43)).seeds == (42, 43)  # the recipe's lm_seeds
    assert ("multitask_linear", "multitask_rwm") in [(c.a, c.b) for c in e.comparisons]
    # issue 12's systems: names fixed by results.json's contract
    biased = {n: s.nbest_dir for n, s in e.systems.items() if s.nbest_dir}
    fused = {n for n, d in biased.items() if d.endswith("decode_fused")}
    assert fused == {
        "fused_1best",
        "fused_oracle",
        "fused_lm",
        "fused_pretrained_multitask_rwm",
        "fused_nlu_features",
        "fused_lm_features",
    }
    biased = {n: d for n, d in biased.items() if n not in fused}
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
    p.write_text('sets = ["dev", "eval1", "eval2"]\ncomparison_note = "ablations last"\n' + GOOD)
    e = load_experiments(p)
    assert e.eval_set == "eval2" and e.comparison_note == "ablations last"
    p.write_text('sets = ["dev"]\n' + GOOD)
    assert load_experiments(p).eval_set == "dev"
    assert load_experiments(SNIPS).eval_set == "test"
    # "test" stays the evaluation set when a further set is added after it
    p.write_text('sets = ["dev", "test", "other"]\n' + GOOD)
    assert load_experiments(p).eval_set == "test"
    p.write_text('sets = ["dev", "test", "other"]\neval_set = "other"\n' + GOOD)
    assert load_experiments(p).eval_set == "other"
    p.write_text('tune_set = "test"\nsets = ["test", "a", "b"]\n' + GOOD)
    assert load_experiments(p).eval_set == "b"


@pytest.mark.parametrize(
    "head, message",
    [
        ('eval_set = "other"\n', r"eval_set 'other' is not one of sets \['dev', 'test'\]"),
        ('eval_set = "dev"\n', "eval_set 'dev' is the tune_set"),
        ("eval_set = 3\n", "eval_set: expected str"),
    ],
)
def test_bad_eval_set(tmp_path, head, message):
    p = tmp_path / "systems.toml"
    p.write_text(head + GOOD)
    with pytest.raises(InputError, match=message) as e:
        load_experiments(p)
    assert str(p) in str(e.value)


def test_eval_set_of_one_set_may_be_the_tune_set(tmp_path):
    p = tmp_path / "systems.toml"
    p.write_text('sets = ["dev"]\neval_set = "dev"\n' + GOOD)
    assert load_experiments(p).eval_set == "dev"


def test_sets_override(tmp_path):
    p = tmp_path / "systems.toml"
    p.write_text(GOOD)
    e = load_experiments(p, sets=("dev", "test", "test_unseen_engine"))
    assert e.sets == ("dev", "test", "test_unseen_engine") and e.eval_set == "test"
    with pytest.raises(InputError, match="tune_set 'dev' is not one of sets") as err:
        load_experiments(p, sets=("test", "test_unseen_engine"))
    assert str(p) in str(err.value) and "sets replaced by" in str(err.value)
    with pytest.raises(InputError, match="a set is named twice"):
        load_experiments(p, sets=("dev", "dev"))
    # the file's eval_set must be among the sets given
    p.write_text('sets = ["dev", "test", "other"]\neval_set = "other"\n' + GOOD)
    with pytest.raises(InputError, match="eval_set 'other' is not one of sets"):
        load_experiments(p, sets=("dev", "test"))


EXCLUDE = (
    GOOD
    + """[systems.c]
label = "C"
lm_checkpoint = "exp/lm/c.pt"
[systems.d]
label = "D"
lm_checkpoint = "exp/lm/d.pt"
[[comparisons]]
a = "a"
b = "c"
[[comparisons]]
a = "c"
b = "d"
[[comparisons]]
a = "a"
b = "d"
[[targets]]
against = "c"
metric = "wer"
[[targets]]
against = "a"
metric = "rare_wer"
[[limits]]
system = "c"
metric = "wer"
max_value = 50.0
[[limits]]
system = "d"
metric = "wer"
max_value = 50.0
"""
)


def test_exclude_systems(tmp_path):
    p = tmp_path / "systems.toml"
    p.write_text(EXCLUDE)
    full = load_experiments(p)
    assert len(full.comparisons) == 3 and len(full.targets) == 2 and len(full.limits) == 2
    e = load_experiments(p, exclude=("c",))
    assert list(e.systems) == ["a", "o", "b", "d"] and e.rescoring_systems == ["b", "d"]
    assert [(c.a, c.b) for c in e.comparisons] == [("a", "d")]
    assert [t.against for t in e.targets] == ["a"]
    assert [t.system for t in e.limits] == ["d"]
    assert e.headline == "b" and e.sets == full.sets and e.path == p
    e = load_experiments(p, exclude=("c", "d"))
    assert list(e.systems) == ["a", "o", "b"] and not e.comparisons and not e.limits


@pytest.mark.parametrize(
    "names, message",
    [
        (("c", "zz"), "excluded system 'zz' is not a declared system"),
        (("b",), "system 'b' is the matrix's headline: it cannot be excluded"),
        (("a",), "system 'a' is the matrix's first_pass"),
        (("o",), "system 'o' is the matrix's oracle"),
    ],
)
def test_bad_exclude(tmp_path, names, message):
    p = tmp_path / "systems.toml"
    p.write_text(EXCLUDE)
    with pytest.raises(InputError, match=message) as e:
        load_experiments(p, exclude=names)
    assert str(p) in str(e.value)


def test_missing_matrix(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_experiments(tmp_path / "none.toml")
