"""make-context-lists (which slot lexicon biases each utterance), the biased first-pass score in
rescoring, per-system n-best folders and absolute limits of the experiment matrix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rescoring.context_lists import ContextListsConfig, make_lists, nbest_vote
from rescoring.context_lists import main as lists_main
from rescoring.experiments import exclude_systems, parse_experiments
from rescoring.nbest import read_nbest_jsonl
from rescoring.rescore import main as rescore_main
from tests.rescoring.conftest import RECIPE_SETS, write_lines


def _lexicons(d: Path, intents=("PlayMusic", "BookRestaurant", "GetWeather", "RateBook")) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for i in intents:
        (d / f"intent-{i}.txt").write_text("hey jude\t2\n")
    (d / "global.txt").write_text("hey jude\t2\nboston\t1\n")
    return d


@pytest.fixture()
def standin(monkeypatch):
    import lm.scorer
    from tests.rescoring.standin_lm import StandInLMScorer

    monkeypatch.setattr(lm.scorer, "LMScorer", StandInLMScorer)
    classified: list[str] = []
    predict = StandInLMScorer.predict_nlu

    def recording(self, sentences):
        classified.extend(sentences)
        return predict(self, sentences)

    monkeypatch.setattr(StandInLMScorer, "predict_nlu", recording)
    return classified


def _rows(path: Path) -> dict[str, str]:
    return dict(line.split("\t") for line in path.read_text().splitlines())


def test_gold_lists_name_each_utterances_intent(recipe):
    lex = _lexicons(recipe / "lex")
    out = recipe / "gold.tsv"
    summary = make_lists(
        ContextListsConfig(
            source="gold",
            gold=[recipe / "nlu_dev.jsonl.gz", recipe / "nlu_test.jsonl.gz"],
            lexicon_dir=lex,
            out=out,
        )
    )
    want = {u: f"intent-{i}" for rows in RECIPE_SETS.values() for u, _, i, _, _ in rows}
    assert _rows(out) == want
    assert summary["utterances"] == 5 and summary["fallback_to_global"] == 0
    assert json.loads(Path(f"{out}.json").read_text())["intents"]["PlayMusic"] == 2


def test_predicted_lists_come_from_the_nlu_head_on_the_1best(recipe, standin):
    lex = _lexicons(recipe / "lex")
    out = recipe / "pred.tsv"
    summary = make_lists(
        ContextListsConfig(
            source="predicted",
            nbest=[recipe / "nbest-dev.jsonl", recipe / "nbest-test.jsonl"],
            lm_checkpoint=recipe / "mt.jsonl",
            gold=[recipe / "nlu_dev.jsonl.gz", recipe / "nlu_test.jsonl.gz"],
            lexicon_dir=lex,
            out=out,
        )
    )
    rows = _rows(out)
    assert set(rows) == {"d1", "d2", "d3", "t1", "t2"}
    # the stand-in classifies by word overlap: the 1-best "play hey dude" is PlayMusic
    assert rows["d1"] == "intent-PlayMusic"
    # only the 1-best of each utterance was classified
    assert sorted(standin) == sorted(
        hyps[0][0] for rows_ in RECIPE_SETS.values() for *_, hyps in rows_
    )
    assert 0 <= summary["intent_accuracy"] <= 100


def test_unknown_intent_is_an_error_naming_the_utterance_or_a_counted_fallback(recipe, capsys):
    lex = _lexicons(recipe / "lex", intents=("PlayMusic",))
    args = ["--source", "gold", "--gold", str(recipe / "nlu_dev.jsonl.gz")]
    args += ["--lexicon-dir", str(lex), "--out", str(recipe / "g.tsv")]
    with pytest.raises(SystemExit) as e:
        lists_main(args)
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("make-context-lists: error:")
    assert "d2" in last and "intent-BookRestaurant.txt" in last
    assert not (recipe / "g.tsv").exists()
    summary = make_lists(
        ContextListsConfig(
            source="gold",
            gold=[recipe / "nlu_dev.jsonl.gz"],
            lexicon_dir=lex,
            out=recipe / "g.tsv",
            missing="global",
        )
    )
    assert summary["fallback_to_global"] == 2
    assert _rows(recipe / "g.tsv") == {
        "d1": "intent-PlayMusic",
        "d2": "global",
        "d3": "global",
    }


def test_option_errors(recipe, capsys):
    for args in (
        ["--source", "nope"],
        ["--source", "predicted"],  # no --nbest / --lm-checkpoint
        ["--source", "gold"],  # no --gold
        ["--source", "gold", "--gold", "x", "--lexicon-dir", str(recipe / "missing")],
    ):
        with pytest.raises(SystemExit) as e:
            lists_main(args)
        assert e.value.code == 2
        assert "make-context-lists: error:" in capsys.readouterr().err


def test_nbest_vote_sums_posteriors_per_intent():
    # two weaker hypotheses of intent B outweigh the best one of intent A
    assert nbest_vote(["A", "B", "B"], [-1.0, -1.2, -1.3]) == "B"
    assert nbest_vote(["A", "B", "B"], [-1.0, -5.0, -6.0]) == "A"
    assert nbest_vote(["A", "B"], [-1.0, -1.0]) == "A"  # tie: the better-ranked


def test_biased_first_pass_ranks_by_am_plus_context_score(tmp_path):
    """A biased n-best is ranked by am_score + context_score; rescoring with λ = β = 0 must keep
    that 1-best (not the best am_score alone)."""
    nb = write_lines(
        tmp_path / "nbest-test.jsonl",
        [
            {
                "id": "u1",
                "ref": "play hey jude",
                "hyps": [
                    {
                        "words": "play hey jude",
                        "tokens": [],
                        "am_score": -3.0,
                        "context_score": 2.5,
                    },
                    {
                        "words": "play hey dude",
                        "tokens": [],
                        "am_score": -1.0,
                        "context_score": 0.0,
                    },
                ],
            }
        ],
    )
    rec = read_nbest_jsonl(nb)[0]
    assert [h.first_pass_score for h in rec.hyps] == [-0.5, -1.0]
    out = tmp_path / "out"
    rescore_main(
        ["--nbest", str(nb), "--scorer", "none", "--lm-scale", "0", "--word-bonus", "0"]
        + ["--out-dir", str(out), "--set-name", "test"]
    )
    import gzip

    with gzip.open(out / "onebest-test.jsonl.gz", "rt") as f:
        assert json.loads(f.readline())["hyp"] == "play hey jude"


MATRIX = {
    "headline": "b",
    "first_pass": "a",
    "oracle": "o",
    "systems": {
        "a": {"label": "A"},
        "o": {"label": "O", "select": "oracle"},
        "b": {"label": "B", "nbest_dir": "exp/biased"},
    },
}


def test_matrix_per_system_nbest_dir_and_limits():
    exps = parse_experiments(
        MATRIX | {"limits": [{"system": "b", "metric": "rare_wer", "max_value": 70}]}
    )
    assert exps.systems["b"].nbest_dir == "exp/biased" and exps.systems["a"].nbest_dir is None
    assert exps.limits[0].max_value == 70 and not exps.limits[0].strict
    bad = [
        ({"system": "zz", "metric": "wer", "max_value": 1}, "not a declared system"),
        ({"system": "b", "metric": "cer", "max_value": 1}, "metric"),
        ({"system": "b", "metric": "wer"}, "missing max_value"),
        ({"system": "b", "metric": "wer", "max_value": "x"}, "expected"),
        ({"system": "b", "metric": "wer", "max_value": 1, "foo": 1}, "unknown key"),
    ]
    for limit, msg in bad:
        with pytest.raises(ValueError, match=msg):
            parse_experiments(MATRIX | {"limits": [limit]}, "m.toml")
    with pytest.raises(ValueError, match="nbest_dir"):
        parse_experiments(
            MATRIX | {"systems": MATRIX["systems"] | {"c": {"label": "C", "nbest_dir": 3}}}
        )


def test_limits_in_the_targets_table():
    from rescoring.report_tables import targets_md

    exps = parse_experiments(
        MATRIX
        | {
            "limits": [
                {"system": "b", "metric": "rare_wer", "max_value": 70},
                {"system": "b", "metric": "wer", "max_value": 20.0, "strict": True},
            ]
        }
    )
    cell = {"value": 65.0, "ci95": [60.0, 70.0]}
    results = {"b": {"test": {"rare_wer": cell, "wer": {"value": 20.0}}}}

    class NoPairs:
        def on(self, set_name):
            return self

        def test(self, *a):
            return None

    md = "\n".join(targets_md(results, NoPairs(), exps))
    assert "rare-word WER of B | ≤ 70 | 65.00 [60.00, 70.00] (-5.00)" in md and "**met**" in md
    assert "WER of B | < 20 | 20.00 (+0.00) | | | **NOT met**" in md
    assert "1 of 2 targets NOT met" in md


def test_targets_and_limits_on_another_set():
    """Issue 13's checks: a target of another system than the headline and a limit, each on a
    set beside the evaluation set, read that set's results and paired tests."""
    from rescoring.report_tables import targets_md

    exps = parse_experiments(
        MATRIX
        | {
            "systems": MATRIX["systems"] | {"c": {"label": "C"}},
            "targets": [
                {"against": "a", "metric": "wer"},
                {"against": "a", "metric": "wer", "set": "held"},
                {"system": "c", "against": "a", "metric": "wer", "set": "held"},
            ],
            "limits": [{"system": "a", "metric": "wer", "max_value": 35, "set": "held"}],
        }
    )
    assert exps.targets[2].system == "c" and exps.limits[0].set == "held"
    results = {
        "a": {"test": {"wer": {"value": 30.0}}, "held": {"wer": {"value": 40.0}}},
        "b": {"test": {"wer": {"value": 29.0}}, "held": {"wer": {"value": 41.0}}},
        "c": {"held": {"wer": {"value": 38.0}}},
    }

    class Pairs:
        def __init__(self, set_name="test"):
            self.set_name = set_name

        def on(self, set_name):
            return Pairs(set_name)

        def test(self, a, b, metric):
            va = results[a][self.set_name][metric]["value"]
            vb = results[b][self.set_name][metric]["value"]
            change = 100 * (vb - va) / va
            return {
                "a_value": va,
                "b_value": vb,
                "relative_change": change,
                "diff_ci95": None,
                "p_b_better": None,
            }

    md = "\n".join(targets_md(results, Pairs(), exps))
    assert "| WER vs A | lower | 30.00 → 29.00 (-3.3%)" in md
    assert "| WER vs A (held) | lower | 40.00 → 41.00 (+2.5%)" in md
    assert "| WER of C vs A (held) | lower | 40.00 → 38.00 (-5.0%)" in md
    assert "| WER of A (held) | ≤ 35 | 40.00 (+5.00) |" in md
    assert "2 of 4 targets NOT met" in md
    for bad, msg in [
        ({"system": "zz", "against": "a", "metric": "wer"}, r"targets\[0\].system"),
        ({"against": "a", "metric": "wer", "set": 3}, "set"),
    ]:
        with pytest.raises(ValueError, match=msg):
            parse_experiments(MATRIX | {"targets": [bad]}, "m.toml")
    dropped = exclude_systems(exps, ("c",), "m.toml")
    assert len(dropped.targets) == 2 and all(t.system != "c" for t in dropped.targets)


def test_target_with_max_p_value_needs_the_paired_test_to_show_it():
    """``max_p_value``: a lower value is met only if its one-sided p (the share of resamples in
    which B is not better) is below the bound; a test without p is not met; targets without the
    field keep the plain rule."""
    from rescoring.report_tables import targets_md

    tests = {("a", "wer"): (30.0, 29.0, 0.03), ("a", "rare_wer"): (60.0, 59.0, 0.34)}
    tests[("o", "wer")] = (31.0, 29.0, None)

    class Pairs:
        def on(self, set_name):
            return self

        def test(self, a, b, metric):
            va, vb, pb = tests[(a, metric)]
            return {
                "a_value": va,
                "b_value": vb,
                "relative_change": 100 * (vb - va) / va,
                "diff_ci95": None,
                "p_b_better": pb,
            }

    def table(max_p):
        extra = {} if max_p is None else {"max_p_value": max_p}
        exps = parse_experiments(
            MATRIX
            | {
                "targets": [
                    {"against": "a", "metric": "wer"} | extra,
                    {"against": "a", "metric": "rare_wer"} | extra,
                    {"against": "o", "metric": "wer"} | extra,
                ]
            }
        )
        results = {"b": {"test": {"wer": {"value": 29.0}}}}
        return "\n".join(targets_md(results, Pairs(), exps))

    md = table(0.05)
    assert "| WER vs A | lower, p < 0.05 | 30.00 → 29.00 (-3.3%) | n/a | 0.030 | **met** |" in md
    assert "| rare-word WER vs A | lower, p < 0.05 | 60.00 → 59.00 (-1.7%) | n/a | 0.340 | " in md
    assert "| WER vs O | lower, p < 0.05 | 31.00 → 29.00 (-6.5%) | n/a | n/a | **NOT met** |" in md
    assert "2 of 3 targets NOT met" in md and "not better (small p: better), is below x" in md
    assert "0.340 | **NOT met** |" in md
    assert "1 of 3 targets NOT met" in table(0.5)  # 0.34 < 0.5
    plain = table(None)  # no bound: any lower value counts
    assert "All targets met" in plain and "p <" not in plain and "is below x" not in plain
    for bad, msg in [(0, r"targets\[0\] max_p_value: must be in"), ("x", "expected")]:
        with pytest.raises(ValueError, match=msg):
            parse_experiments(
                MATRIX | {"targets": [{"against": "a", "metric": "wer"} | {"max_p_value": bad}]},
                "m.toml",
            )
