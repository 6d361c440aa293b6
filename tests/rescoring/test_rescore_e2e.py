"""Tuning on a dev set where the right λ is known, external n-best rescoring, and a tiny
end-to-end run of the stand-alone entry points: n-best -> tune (dev) -> rescore (test) -> score
-> RESULTS.md + plots, with the systems, labels, comparisons and targets of a matrix file."""

import json
import re

import numpy as np
import pytest

from rescoring import report, rescore, score, tune
from rescoring.experiments import load_experiments
from rescoring.nbest import Hyp, NbestRecord
from rescoring.params import Weights, total_score
from rescoring.rescore import apply_weights, nbest_arrays
from rescoring.results import PairedTests, collect
from rescoring.tune import best_point, grid, sweep
from tests.rescoring.conftest import RECIPE_SETS as SETS


def test_tuning_finds_the_known_lambda():
    # The right hypothesis is 1.0 worse acoustically and 2.0 better under the LM: it wins for
    # λ > 0.5, so the smallest λ of the grid with the lowest WER is 0.55.
    recs = [
        NbestRecord(
            f"u{i}",
            "right words",
            [Hyp("wrong words", -1.0, lm_score=-4.0), Hyp("right words", -2.0, lm_score=-2.0)],
        )
        for i in range(3)
    ]
    arrays = nbest_arrays(recs, "lm:bigram")
    lam, beta, wer = best_point(sweep(arrays, "lm:bigram", grid(0, 1.5, 0.05), grid(-1, 1, 0.5)))
    assert (lam, beta, wer) == (pytest.approx(0.55), 0.0, 0.0)
    assert arrays.wer(Weights.lm_bonus("lm:bigram", 0.0, 0.0)) == pytest.approx(50.0)


def test_one_formula_for_the_sweep_and_the_records():
    """The vectorised sweep and the per-record totals are the same function, bit for bit."""
    rng = np.random.default_rng(0)
    recs = [
        NbestRecord(
            f"u{i}",
            "a b c",
            [
                Hyp(" ".join("abcd"[: rng.integers(0, 5)]), rng.normal(), lm_score=rng.normal())
                for _ in range(4)
            ],
        )
        for i in range(50)
    ]
    lm = "lm:nlm"
    arrays = nbest_arrays(recs, lm)
    for lam, beta in ((0.0, 0.0), (0.35, 1.75), (1.3, -0.6)):
        w = Weights.lm_bonus(lm, lam, beta)
        totals = total_score(arrays.x, w)  # (U, N)
        chosen = arrays.choose(w)
        apply_weights(recs, w, lm)  # re-sorts each list by total
        for i, r in enumerate(recs):
            assert r.hyps[0].total == totals[i, chosen[i]]
        recs = [NbestRecord(r.id, r.ref, sorted(r.hyps, key=lambda h: -h.am_score)) for r in recs]


def _score(d, system, s, recipe):
    score.main(
        [
            "--hyps",
            str(d / f"onebest-{s}.jsonl.gz"),
            "--gold",
            str(recipe / f"nlu_{s}.jsonl.gz"),
            "--word-counts",
            str(recipe / "word_counts.txt"),
            "--threshold",
            "5",
            "--out-dir",
            str(d),
            "--set-name",
            s,
            "--system",
            system,
            "--bootstrap-samples",
            "200",
        ]
    )


LABELS = {
    "rnnt_1best": "RNN-T 1-best",
    "oracle": "n-best oracle",
    "lm": "+ LM rescoring (LM objective only)",
    "multitask_linear": "+ multitask LM, linear weights",
    "multitask_rwm": "+ multitask LM, RWM weights",
    "pretrained": "+ LM-pretrained, multitask fine-tuned (RWM)",
}


def _matrix(path, headline: str, targets: list[tuple[str, str, float]]):
    """A matrix of the six systems (two of them never run here), comparing every rescorer with
    the 1-best and with LM-only rescoring."""
    lines = [f'headline = "{headline}"', 'first_pass = "rnnt_1best"', 'oracle = "oracle"']
    lines.append('comparison_note = "The last row is an ablation."')
    pairs = [
        (a, b) for b in LABELS if b not in ("rnnt_1best", "oracle") for a in ("rnnt_1best", "lm")
    ]
    pairs = [(a, b) for a, b in pairs if a != b] + [("multitask_linear", "multitask_rwm")]
    lines += ["comparisons = ["] + [f'  {{ a = "{a}", b = "{b}" }},' for a, b in pairs] + ["]"]
    lines += (
        ["targets = ["]
        + [
            f'  {{ against = "{a}", metric = "{m}", min_relative_reduction = {g} }},'
            for a, m, g in targets
        ]
        + ["]"]
    )
    for name, label in LABELS.items():
        lines += [f"[systems.{name}]", f'label = "{label}"']
        if name == "oracle":
            lines.append('select = "oracle"')
        elif name != "rnnt_1best":
            lines.append(f'lm_checkpoint = "exp/lm/{name}/best.pt"')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_end_to_end_report(recipe, monkeypatch):
    import lm.scorer
    from tests.rescoring.standin_lm import StandInLMScorer

    # The 'nlm' scorer goes through lm.scorer.LMScorer; the stand-in implements its API.
    monkeypatch.setattr(lm.scorer, "LMScorer", StandInLMScorer)
    StandInLMScorer.calls = []
    rd = recipe / "rescore"
    for system, extra in (
        ("rnnt_1best", ["--scorer", "none"]),
        ("lm", ["--scorer", "bigram", "--lm-checkpoint", str(recipe / "lm.txt")]),
        ("multitask_rwm", ["--scorer", "nlm", "--lm-checkpoint", str(recipe / "mt.jsonl")]),
    ):
        d = rd / system
        tune.main(["--nbest", str(recipe / "nbest-dev.jsonl"), "--out-dir", str(d), *extra])
        rescore.main(
            [
                "--nbest",
                str(recipe / "nbest-test.jsonl"),
                "--params",
                str(d / "tuned.json"),
                "--out-dir",
                str(d),
                "--set-name",
                "test",
            ]
        )
        (d / "cmd.sh").write_text(f"tune-rescoring ... {system}\n")
        for s in ("dev", "test"):
            _score(d, system, s, recipe)
    d = rd / "oracle"
    for s in ("dev", "test"):
        rescore.main(
            [
                "--nbest",
                str(recipe / f"nbest-{s}.jsonl"),
                "--select",
                "oracle",
                "--scorer",
                "none",
                "--out-dir",
                str(d),
                "--set-name",
                s,
            ]
        )
        _score(d, "oracle", s, recipe)

    # tune (dev) then rescore (test): one batch each, every distinct hypothesis scored once
    assert len(StandInLMScorer.calls) == 2
    for call, s in zip(StandInLMScorer.calls, ("dev", "test"), strict=True):
        distinct = {h[0] for row in SETS[s] for h in row[4]}
        assert sorted(call) == sorted(distinct)
    info = json.loads((rd / "multitask_rwm" / "rescore-test.json").read_text())
    assert info["lm_timing"]["unique"] == 5 and info["lm_timing"]["hyps_per_second"] > 0
    import gzip

    ob = [json.loads(x) for x in gzip.open(rd / "multitask_rwm" / "onebest-test.jsonl.gz", "rt")]
    assert [(r["hyp"], r["intent"], r["slots"]) for r in ob] == [
        ("play hey jude now", "PlayMusic", ["O", "B-track", "I-track", "O"]),
        ("weather in boston", "GetWeather", ["O", "O", "B-city"]),
    ]
    mt = json.loads((rd / "multitask_rwm" / "metrics-test.json").read_text())
    assert mt["intent_acc"] == 100.0 and mt["slot_f1"] == 100.0 and mt["wer"] == 0.0

    tuned = json.loads((rd / "lm" / "tuned.json").read_text())
    assert tuned["weights"]["lm:bigram"] > 0 and tuned["wer"] < tuned["wer_first_pass"]
    m = {
        name: json.loads((rd / name / "metrics-test.json").read_text())
        for name in ("rnnt_1best", "lm", "oracle")
    }
    assert m["rnnt_1best"]["wer"] == pytest.approx(100 * 2 / 7)
    assert m["oracle"]["wer"] == 0.0
    assert m["lm"]["wer"] < m["rnnt_1best"]["wer"]
    assert m["rnnt_1best"]["rare_wer"] > m["lm"]["rare_wer"]  # boston/jude are rare
    assert (rd / "lm" / "errs-test-lm.txt").read_text().startswith("%WER")
    errs = (rd / "rnnt_1best" / "errs-test-rnnt_1best.txt").read_text()
    assert errs.startswith("%WER 28.57% [ 2 / 7, 0 ins, 0 del, 2 sub ]")
    assert "t1:\tplay hey (jude->dude) now" in errs and "1   boston -> austin" in errs

    (recipe / "exp" / "lm" / "multitask_rwm").mkdir(parents=True)
    (recipe / "exp" / "lm" / "multitask_rwm" / "cmd.sh").write_text("train-lm --mode rwm\n")
    (recipe / "exp" / "lm" / "multitask_rwm" / "config.json").write_text(
        json.dumps({"model": {"hidden": 7}, "config": {"lr": 0.5}, "env": {"torch": "x"}})
    )
    matrix = _matrix(recipe / "systems.toml", "pretrained", [("rnnt_1best", "rare_wer", 15.0)])
    report.main(
        [
            "--systems",
            str(matrix),
            "--rescore-dir",
            str(rd),
            "--out",
            str(recipe / "RESULTS.md"),
            "--title",
            "tiny",
            "--cmd-files",
            str(recipe / "exp" / "*" / "*" / "cmd.sh"),
            "--config-files",
            str(recipe / "exp" / "*" / "*" / "config.json"),
        ]
    )
    md = (recipe / "RESULTS.md").read_text()
    assert "| RNN-T 1-best |" in md and "+ multitask LM, linear weights | not run" in md
    assert "tune-rescoring ... lm" in md and "p (B not better)" in md
    assert "train-lm --mode rwm" in md
    assert "## Resolved configurations" in md and "- **model**: hidden=7" in md
    assert "- **config**: lr=0.5" in md
    res = json.loads((recipe / "results.json").read_text())
    assert res["systems"]["multitask_rwm"]["test"]["slot_f1"]["value"] == 100.0
    assert res["systems"]["lm"]["test"]["wer"]["value"] == pytest.approx(m["lm"]["wer"])
    assert res["systems"]["lm"]["test"]["wer"]["ci95"] is not None
    for png in ("lambda-sweep-dev.png", "test-wer.png"):
        assert (recipe / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    assert "## Targets" not in md  # the default headline system was not run
    assert "## test vs" not in md  # no set beyond dev (tuning) and test (evaluation)

    # Headline checks: the verdicts follow the measured numbers and the targets given.
    def targets(goal: float) -> tuple[str, dict]:
        tgt = [("lm", "rare_wer", 5.0), ("rnnt_1best", "rare_wer", goal), ("lm", "wer", 0.0)]
        tgt.append(("rnnt_1best", "common_wer", 0.0))  # a metric no comparison has
        m = _matrix(recipe / "m2.toml", "multitask_rwm", tgt)
        report.main(["--systems", str(m), "--rescore-dir", str(rd), "--out", str(recipe / "R2.md")])
        return (recipe / "R2.md").read_text(), json.loads((recipe / "results.json").read_text())

    md, res = targets(0.001)
    t = next(
        x
        for x in res["paired_bootstrap"]
        if (x["a"], x["b"], x["metric"]) == ("rnnt_1best", "multitask_rwm", "rare_wer")
    )
    lo, hi = t["diff_ci95"]
    assert lo <= t["b_value"] - t["a_value"] <= hi
    row = next(line for line in md.splitlines() if line.startswith("| rare-word WER vs RNN-T"))
    met = t["relative_change"] <= -0.001
    assert row.endswith("**met** |" if met else "**NOT met** |"), row
    # a target on a metric no comparison has is tested for the target alone (here the 1-best
    # makes no common-word error on test, so the relative change, and the verdict, are n/a)
    exps = load_experiments(recipe / "m2.toml")
    t = PairedTests(rd, collect(rd, exps), "test").test("rnnt_1best", "multitask_rwm", "common_wer")
    assert t["a_value"] == 0.0 and t["relative_change"] is None and t["p_b_better"] is not None
    row = next(line for line in md.splitlines() if line.startswith("| common-word WER vs RNN"))
    assert row == "| common-word WER vs RNN-T 1-best | | n/a | | | n/a |"
    assert {x["metric"] for x in res["paired_bootstrap"]} == {"wer", "rare_wer"}
    assert "over the same resamples. The last row is an ablation." in md
    md, _ = targets(100.1)
    row = next(line for line in md.splitlines() if line.startswith("| rare-word WER vs RNN-T"))
    assert row.endswith("**NOT met** |") and "targets NOT met" in md  # -100.1% is impossible
    assert "Ceiling: the n-best oracle's rare-word WER is" in md
    assert "## Per-intent breakdown (test)" in md and "| PlayMusic | 1 |" in md

    # --sets adds a set (not scored here: "not run") without moving the evaluation set;
    # --exclude-systems drops a system with the comparisons naming it
    argv = ["--systems", str(matrix), "--rescore-dir", str(rd), "--out", str(recipe / "R3.md")]
    report.main([*argv, "--sets", "dev", "test", "extra", "--exclude-systems", "multitask_linear"])
    md = (recipe / "R3.md").read_text()
    assert "## extra" in md and "| RNN-T 1-best | not run |" in md
    assert "## Paired bootstrap (test)" in md and "## test vs extra" not in md
    assert "linear weights" not in md and "| + multitask LM, RWM weights |" in md


def test_score_reports_missing_hypotheses(recipe, tmp_path, capsys):
    hyps = tmp_path / "hyps.txt"
    hyps.write_text("t1 play hey jude now\n")
    with pytest.raises(SystemExit) as e:
        score.main(
            [
                "--hyps",
                str(hyps),
                "--gold",
                str(recipe / "nlu_test.jsonl.gz"),
                "--word-counts",
                str(recipe / "word_counts.txt"),
                "--out-dir",
                str(tmp_path),
            ]
        )
    assert e.value.code == 2
    assert re.search(r"no hypothesis for 1 utterance\(s\).*t2", capsys.readouterr().err)


def test_rescore_external_tsv(recipe, tmp_path):
    tsv = tmp_path / "other-test.tsv"
    tsv.write_text(
        "t1\tplay hey dude now\t-1.1\nt1\tplay hey jude now\t-1.3\nt2\tweather in boston\t-1.2\n"
    )
    rescore.main(
        [
            "--nbest",
            str(tsv),
            "--refs",
            str(recipe / "nlu_test.jsonl.gz"),
            "--scorer",
            "bigram",
            "--lm-checkpoint",
            str(recipe / "lm.txt"),
            "--lm-scale",
            "1.0",
            "--out-dir",
            str(tmp_path),
            "--set-name",
            "test",
        ]
    )
    import gzip

    rows = [json.loads(line) for line in gzip.open(tmp_path / "onebest-test.jsonl.gz", "rt")]
    assert [r["hyp"] for r in rows] == ["play hey jude now", "weather in boston"]


def test_nbest_dir_one_line_stages(recipe, tmp_path):
    """--nbest-dir reads nbest-dev (tune) and nbest-<set> (rescore) from a decode folder."""
    import gzip
    import shutil

    dec = tmp_path / "beam8"
    dec.mkdir()
    for s in ("dev", "test"):
        with (
            open(recipe / f"nbest-{s}.jsonl", "rb") as f,
            gzip.open(dec / f"nbest-{s}.jsonl.gz", "wb") as g,
        ):
            shutil.copyfileobj(f, g)
    out = tmp_path / "out"
    lm = ["--scorer", "bigram", "--lm-checkpoint", str(recipe / "lm.txt")]
    tune.main(["--nbest-dir", str(dec), "--out-dir", str(out), *lm])
    assert json.loads((out / "tuned.json").read_text())["tuned_on"].endswith("nbest-dev.jsonl.gz")
    rescore.main(
        [
            "--nbest-dir",
            str(dec),
            "--set-name",
            "test",
            "--params",
            str(out / "tuned.json"),
            "--out-dir",
            str(out),
        ]
    )
    info = json.loads((out / "rescore-test.json").read_text())
    assert info["nbest"].endswith("nbest-test.jsonl.gz") and info["lm_scale"] > 0
