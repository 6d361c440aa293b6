"""The evaluation set beside a further set (``cross_set_md``): numbers, Δ, and when it is shown."""

import pytest

from rescoring.experiments import parse_experiments
from rescoring.report_tables import cross_set_md


def matrix(sets: list[str]):
    return parse_experiments(
        {
            "headline": "mt",
            "first_pass": "fp",
            "oracle": "orc",
            "sets": sets,
            "systems": {
                "fp": {"label": "first pass"},
                "orc": {"label": "oracle", "select": "oracle"},
                "mt": {"label": "+ multitask LM", "lm_checkpoint": "exp/lm/{seed}.pt"},
                "lm": {"label": "+ LM", "lm_checkpoint": "exp/lm/lm.pt"},
            },
            "seeds": [1, 2],
        }
    )


def entry(wer: float, rare: float, sd: float | None = None) -> dict:
    cell = {"value": wer, "ci95": [wer - 1, wer + 1]}
    if sd is not None:
        cell["sd"] = sd
    return {"wer": cell, "rare_wer": {"value": rare, "ci95": [rare - 1, rare + 1]}}


RESULTS = {
    "fp": {"test": entry(20.0, 50.0), "test_unseen_engine": entry(40.0, 80.0)},
    "orc": {"test": entry(10.0, 30.0), "test_unseen_engine": entry(30.0, 60.0)},
    "mt": {"test": entry(18.0, 45.0, sd=0.25), "test_unseen_engine": entry(38.0, 70.0, sd=0.5)},
    "lm": {"test": entry(19.0, 47.0)},  # not scored on the further set: no row
}


def test_cross_set_table():
    exps = matrix(["dev", "test", "test_unseen_engine"])
    assert exps.eval_set == "test"
    md = cross_set_md(RESULTS, exps)
    assert md[0] == "## test vs test_unseen_engine"
    assert "rendered by TTS engines never used in training" in md[2]
    rows = {line.split(" | ")[0]: line for line in md if line.startswith("| ")}
    assert rows["| first pass"] == "| first pass | 20.00 | 40.00 | 50.00 | 80.00 |  |  |"
    # Δ: relative to the first pass on the same set, (18 - 20) / 20 and (38 - 40) / 40
    assert rows["| + multitask LM"] == (
        "| + multitask LM | 18.00 ± 0.25 | 38.00 ± 0.50 | 45.00 | 70.00 | -10.0% | -5.0% |"
    )
    assert rows["| oracle"].endswith("| -50.0% | -25.0% |")
    assert "| + LM" not in rows
    names = [line.split(" | ")[0][2:] for line in md[6:] if line.startswith("| ")]
    assert names == ["first pass", "oracle", "+ multitask LM"]  # declaration order


def test_generic_note_and_missing_first_pass():
    exps = matrix(["dev", "test", "extra"])
    results = {n: {"test": r["test"], "extra": r["test"]} for n, r in RESULTS.items() if n != "fp"}
    md = cross_set_md(results, exps)
    assert md[0] == "## test vs extra" and md[2].startswith("extra is a further set;")
    assert all(line.endswith("| n/a | n/a |") for line in md if line.startswith("| +"))


@pytest.mark.parametrize(
    "sets, title",
    [
        (["dev", "test"], None),
        (["dev"], None),
        (["dev", "eval1", "eval2"], "## eval2 vs eval1"),
        (["dev", "test", "a", "b"], "## test vs a"),
    ],
)
def test_section_only_with_a_further_set(sets, title):
    results = {n: {s: entry(20.0, 50.0) for s in sets} for n in RESULTS}
    md = cross_set_md(results, matrix(sets))
    assert (md[0] if md else None) == title
    if len(sets) == 4:
        assert [line for line in md if line.startswith("## ")] == [title, "## test vs b"]
