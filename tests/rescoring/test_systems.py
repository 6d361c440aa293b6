"""rescore-systems (recipe stage 14): every system of a matrix, the same files as running the
stand-alone commands of its cmd.sh one by one, skipped on a re-run only when nothing changed;
then make-report with the stage-time table of the recipe's .done markers."""

from __future__ import annotations

import argparse
import gzip
import json
import shlex
from datetime import datetime
from pathlib import Path

import pytest

from common.cli import add_dataclass_args, dataclass_from_args
from common.stages import FINISHED_AT_FORMAT
from rescoring import report, rescore, score, systems, tune
from rescoring.params import read_tuned
from tests.rescoring.conftest import MT_TRAIN

MATRIX = """
headline = "mt"
first_pass = "first"
oracle = "oracle"
nlu_checkpoint = "exp/lm/mt/best.pt"
comparisons = [{ a = "first", b = "lm" }, { a = "first", b = "mt" }, { a = "lm", b = "mt" }]
targets = [{ against = "first", metric = "rare_wer", min_relative_reduction = 5.0 }]

[systems.first]
label = "first pass"

[systems.oracle]
label = "n-best oracle"
select = "oracle"

[systems.lm]
label = "+ LM"
lm_checkpoint = "exp/lm/lm/best.pt"

[systems.mt]
label = "+ multitask LM"
lm_checkpoint = "exp/lm/mt/best.pt"
"""
GRID = ["--lm-scale-min", "0", "--lm-scale-max", "1", "--lm-scale-step", "0.25"]
GRID += ["--word-bonus-min", "0", "--word-bonus-max", "1", "--word-bonus-step", "0.5"]
MAINS = {"tune-rescoring": tune.main, "rescore-nbest": rescore.main, "score-wer": score.main}


@pytest.fixture()
def work(recipe, monkeypatch) -> Path:
    """The recipe laid out as a work dir (decode folder, LM 'checkpoints', matrix); cwd."""
    import lm.scorer
    from tests.rescoring.standin_lm import StandInLMScorer

    monkeypatch.setattr(lm.scorer, "LMScorer", StandInLMScorer)  # 'nlm' -> the stand-in
    StandInLMScorer.calls = []
    dec = recipe / "exp/asr/m/decode"
    dec.mkdir(parents=True)
    for s in ("dev", "test"):
        (dec / f"nbest-{s}.jsonl.gz").write_bytes(
            gzip.compress((recipe / f"nbest-{s}.jsonl").read_bytes(), mtime=0)
        )
    for name, rows in (("lm", MT_TRAIN[:3]), ("mt", MT_TRAIN)):
        (recipe / "exp/lm" / name).mkdir(parents=True)
        (recipe / "exp/lm" / name / "best.pt").write_text(
            "".join(json.dumps({"text": t, "intent": i, "slots": sl}) + "\n" for t, i, sl in rows)
        )
    (recipe / "systems.toml").write_text(MATRIX)
    monkeypatch.chdir(recipe)
    return recipe


def _run(*extra: str) -> dict[str, str]:
    """rescore-systems with these options; ``{system: "ran" | "skipped"}``."""
    argv = ["--systems", "systems.toml", "--nbest-dir", "exp/asr/m/decode"]
    argv += ["--gold", "nlu_{set}.jsonl.gz", "--word-counts", "word_counts.txt", "--threshold"]
    argv += ["5", "--out-dir", "exp/rescore", *GRID, *extra]
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, systems.SystemsConfig)
    cfg = dataclass_from_args(systems.SystemsConfig, parser.parse_args(argv))
    return systems.rescore_systems(cfg)


def _calls() -> list[list[str]]:
    from tests.rescoring.standin_lm import StandInLMScorer

    return StandInLMScorer.calls


def test_every_system_like_its_commands_one_by_one(work):
    systems.main(
        ["--systems", "systems.toml", "--nbest-dir", "exp/asr/m/decode", "--gold"]
        + ["nlu_{set}.jsonl.gz", "--word-counts", "word_counts.txt", "--out-dir", "exp/rescore"]
        + GRID
    )
    rd = work / "exp/rescore"
    # the LM systems score dev (tuning) then test, every distinct hypothesis once per set
    assert len(_calls()) == 4
    cmd = (rd / "lm" / "cmd.sh").read_text().splitlines()
    assert cmd[0] == f"# Exact commands, run from {work}" and cmd[1].startswith("# (steps of")
    assert cmd[2:] == [
        "tune-rescoring --nbest exp/asr/m/decode/nbest-dev.jsonl.gz --scorer nlm --lm-checkpoint "
        "exp/lm/lm/best.pt --nlu-checkpoint exp/lm/mt/best.pt --out-dir exp/rescore/lm "
        "--set-name dev " + " ".join(GRID) + " --score-cache exp/rescore/score-cache",
        "rescore-nbest --nbest exp/asr/m/decode/nbest-test.jsonl.gz --params "
        "exp/rescore/lm/tuned.json --out-dir exp/rescore/lm --set-name test "
        "--score-cache exp/rescore/score-cache",
        *(
            f"score-wer --hyps exp/rescore/lm/onebest-{s}.jsonl.gz --gold nlu_{s}.jsonl.gz "
            f"--word-counts word_counts.txt --threshold 5 --out-dir exp/rescore/lm "
            f"--set-name {s} --system lm"
            for s in ("dev", "test")
        ),
    ]
    oracle = (rd / "oracle" / "cmd.sh").read_text().splitlines()[2]
    assert oracle == (
        "rescore-nbest --nbest exp/asr/m/decode/nbest-dev.jsonl.gz --scorer none --lm-scale 0 "
        "--word-bonus 0 --select oracle --nlu-checkpoint exp/lm/mt/best.pt "
        "--out-dir exp/rescore/oracle --set-name dev"
    )
    record = json.loads((rd / "mt" / "system.json").read_text())
    assert record["steps"][0][0] == "tune-rescoring" and "exp/lm/mt/best.pt" in record["inputs"]
    assert record["seconds"] >= 0  # the run's own time and end, read by make-report
    datetime.strptime(record["finished_at"], FINISHED_AT_FORMAT)

    # The same commands run one by one into another tree (same depth: same relative paths).
    for name in ("first", "oracle", "lm", "mt"):
        for line in (rd / name / "cmd.sh").read_text().splitlines()[2:]:
            prog, *argv = shlex.split(line.replace("exp/rescore/", "manual/rescore/"))
            MAINS[prog](argv)
        a, b = rd / name, work / "manual/rescore" / name
        names = sorted(p.name for p in b.iterdir() if not p.name.startswith(("set-", ".")))
        ours = {"cmd.sh", "system.json"}
        assert names == sorted(
            p.name
            for p in a.iterdir()
            if not p.name.startswith(("set-", ".")) and p.name not in ours
        )
        for f in names:
            if f.endswith(".json") and f.startswith(("metrics-", "rescore-")):
                ja, jb = (json.loads((d / f).read_text()) for d in (a, b))
                for j in (ja, jb):  # paths of the run and its timing differ
                    for k in ("hyps", "nbest", "lm_timing"):
                        j.pop(k, None)
                assert ja == jb, (name, f)
            elif f == "tuned.json":  # paths relative to the file: compare them resolved
                assert read_tuned(a / f) == read_tuned(b / f)
            else:
                assert (a / f).read_bytes() == (b / f).read_bytes(), (name, f)

    onebest = [json.loads(x) for x in gzip.open(rd / "mt" / "onebest-test.jsonl.gz", "rt")]
    assert [r["hyp"] for r in onebest] == ["play hey jude now", "weather in boston"]
    assert all("intent" in r for r in onebest)  # NLU from the matrix's nlu_checkpoint


def test_rerun_skips_only_what_is_complete_and_unchanged(work):
    assert set(_run().values()) == {"ran"}
    first_calls = len(_calls())
    assert _run() == dict.fromkeys(("first", "oracle", "lm", "mt"), "skipped")
    assert len(_calls()) == first_calls  # no LM was run

    metrics = work / "exp/rescore/lm/metrics-test.json"
    metrics.write_text(metrics.read_text() + " ")  # no longer the file its manifest lists
    assert _run() == {"first": "skipped", "oracle": "skipped", "lm": "ran", "mt": "skipped"}

    out = _run("--word-bonus-max", "2")  # the tuning grid: only the tuned systems change
    assert out == {"first": "skipped", "oracle": "skipped", "lm": "ran", "mt": "ran"}
    tuned = json.loads((work / "exp/rescore/mt/tuned.json").read_text())
    assert tuned["grid"]["word_bonus_max"] == 2.0 and tuned["set"] == "dev"

    (work / "word_counts.txt").write_text((work / "word_counts.txt").read_text() + "now 9\n")
    assert set(_run("--word-bonus-max", "2").values()) == {"ran"}  # an input of every system

    (work / "exp/rescore/first/system.json").unlink()  # e.g. killed before the end
    assert _run("--word-bonus-max", "2")["first"] == "ran"


def test_report_reads_the_matrix_and_the_stage_markers(work):
    _run()
    done = work / ".done"
    done.mkdir()
    for st, secs in ((0, 5), (6, 100), (7, 1), (8, 10), (9, 40), (10, 30), (14, 20)):
        rec = {"stage": st, "argv": ["x"], "preset": "tiny", "desc": f"stage {st}"}
        rec |= {"seconds": float(secs), "peak_rss_kb": 2048 * st, "version": 2}
        (done / f"stage{st}").write_text(json.dumps(rec))
    report.main(
        ["--systems", "systems.toml", "--rescore-dir", "exp/rescore", "--out", "RESULTS.md"]
        + ["--done-dir", ".done", "--parallel", "6-8", "9-13", "--decode-dir", "exp/asr/m/decode"]
    )
    md = (work / "RESULTS.md").read_text()
    for label in ("first pass", "n-best oracle", "+ LM", "+ multitask LM"):
        assert f"| {label} |" in md
    assert "Headline system: + multitask LM." in md and "## Paired bootstrap (test)" in md
    assert "### + multitask LM\n\n```bash\n# Exact commands, run from" in md
    assert "## Stage times (tiny preset," in md and "| 6 | stage 6 | 100 | 12 |" in md
    assert "stages 6-8 (111 s) ran next to stages 9-13 (70 s)" in md
    assert md.endswith(
        "\n\nASR decoding summary: see `exp/asr/m/decode/decode-summary-*.json`.\n"
    ), md[-300:]


def test_loglinear_system_steps_and_rerun(work, monkeypatch):
    """kind = "loglinear": extract-features on every set, tune-loglinear on dev (5 folds),
    rescore-loglinear on every set, score-wer; scored like the others, skipped when unchanged."""
    from rescoring import features as feats_mod
    from tests.rescoring.test_loglinear import StandInNlu

    monkeypatch.setattr(feats_mod, "load_nlu_model", lambda ckpt, bs: StandInNlu())
    (work / "lex").mkdir()
    (work / "lex" / "slot-city.txt").write_text("boston\t2\n")
    (work / "systems.toml").write_text(
        MATRIX
        + """
[systems.nlu]
label = "+ NLU features"
kind = "loglinear"
feature_lms = { mt = "exp/lm/mt/best.pt" }
lexicon_dir = "lex"
folds = 2
"""
    )
    out = _run()
    assert out["nlu"] == "ran"
    d = work / "exp/rescore/nlu"
    progs = [line.split()[0] for line in (d / "cmd.sh").read_text().splitlines()[2:]]
    assert (
        progs
        == ["extract-features"] * 2
        + ["tune-loglinear"]
        + ["rescore-loglinear"] * 2
        + ["score-wer"] * 2
    )
    params = json.loads((d / "loglinear.json").read_text())
    assert params["set"] == "dev" and params["folds"] == 2 and "lm:mt" in params["weights"]
    m = json.loads((d / "metrics-test.json").read_text())
    assert m["wer"] is not None and m["intent_acc"] is not None
    record = json.loads((d / "system.json").read_text())
    assert "lex/slot-city.txt" in record["inputs"] and "exp/lm/mt/best.pt" in record["inputs"]
    report.main(
        ["--systems", "systems.toml", "--rescore-dir", "exp/rescore", "--out", "RESULTS.md"]
    )
    md = (work / "RESULTS.md").read_text()
    assert "| + NLU features |" in md and "Log-linear decoders" in md
    res = json.loads((work / "results.json").read_text())
    assert res["systems"]["nlu"]["loglinear"]["weights"]["am"] == 1.0
    assert _run()["nlu"] == "skipped"
    (work / "lex" / "slot-city.txt").write_text("boston\t2\naustin\t1\n")
    assert _run()["nlu"] == "ran"  # a lexicon is an input of the slot_in_lexicon feature
    assert params["objective"] == "mwer" and params["mwer"]["l2"] == "0.001"  # the default
    assert "--objective mwer" in (d / "cmd.sh").read_text()
    toml = (work / "systems.toml").read_text()
    (work / "systems.toml").write_text(
        toml.replace("folds = 2\n", 'folds = 2\nobjective = "wer"\n')
    )
    assert _run()["nlu"] == "ran"  # another tuner: re-run
    params = json.loads((d / "loglinear.json").read_text())
    assert params["objective"] == "wer" and params["mwer"] is None
    assert "--objective wer" in (d / "cmd.sh").read_text()
    # an ablation: the same decoder on a subset of the features
    toml = (work / "systems.toml").read_text()
    (work / "systems.toml").write_text(
        toml.replace('objective = "wer"\n', 'objective = "wer"\nfeatures = ["lm:mt"]\n')
    )
    assert _run()["nlu"] == "ran"
    params = json.loads((d / "loglinear.json").read_text())
    assert params["features"] == ["am", "lm:mt"] and set(params["weights"]) == {"am", "lm:mt"}


@pytest.mark.parametrize(
    "extra, message",
    [
        ('kind = "loglinear"\n', "feature_lms"),
        ('kind = "loglinear"\nfeature_lms = { mt = 3 }\n', "feature_lms"),
        ('kind = "loglinear"\nfeature_lms = { mt = "x" }\nfolds = 1\n', "folds"),
        ('lm_checkpoint = "x"\nfolds = 3\n', 'needs kind = "loglinear"'),
        ('kind = "loglinear"\nfeature_lms = { mt = "x" }\nobjective = "sgd"\n', "objective: one"),
        ('lm_checkpoint = "x"\nobjective = "mwer"\n', 'needs kind = "loglinear"'),
        ('kind = "loglinear"\nfeature_lms = { mt = "x" }\nfeatures = ["bogus"]\n', "bogus"),
        ('kind = "loglinear"\nfeature_lms = { mt = "x" }\nfeatures = ["lm:lm"]\n', "no LM"),
        ('kind = "loglinear"\nfeature_lms = { mt = "x" }\nfeatures = "am"\n', "expected list"),
        ('kind = "loglinear"\nfeature_lms = { mt = "x" }\nfeatures = []\n', "one or more"),
        ('lm_checkpoint = "x"\nfeatures = ["am"]\n', 'needs kind = "loglinear"'),
        ('kind = "mert"\n', "kind: one of"),
    ],
)
def test_loglinear_matrix_errors(extra, message):
    import tomllib

    from rescoring.experiments import parse_experiments

    obj = tomllib.loads(MATRIX + '\n[systems.x]\nlabel = "X"\n' + extra)
    with pytest.raises(ValueError, match=message):
        parse_experiments(obj, "m.toml")


SEEDED = MATRIX.replace('oracle = "oracle"\n', 'oracle = "oracle"\nseeds = [1, 2]\n', 1).replace(
    'lm_checkpoint = "exp/lm/lm/best.pt"', 'lm_checkpoint = "exp/lm/lm/seed{seed}/best.pt"'
)


def test_seeded_system_runs_once_per_seed_and_reports_mean_sd_and_seeds(work):
    """A system whose checkpoint names {seed}: one run per seed in <system>/seed<N>/, the
    report's value is the seed mean with its sd and per-seed values, paired tests resample
    seeds too; a changed checkpoint of one seed re-runs that seed only."""
    for seed, rows in ((1, MT_TRAIN[:3]), (2, MT_TRAIN[:1])):
        d = work / "exp/lm/lm" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "best.pt").write_text(
            "".join(json.dumps({"text": t, "intent": i, "slots": sl}) + "\n" for t, i, sl in rows)
        )
    (work / "systems.toml").write_text(SEEDED)
    assert set(_run().values()) == {"ran"}
    rd = work / "exp/rescore/lm"
    assert not (rd / "tuned.json").exists()
    for seed in (1, 2):
        cmd = (rd / f"seed{seed}" / "cmd.sh").read_text()
        assert f"--lm-checkpoint exp/lm/lm/seed{seed}/best.pt" in cmd
        assert f"--out-dir exp/rescore/lm/seed{seed} " in cmd and "--system lm" in cmd
        assert (rd / f"seed{seed}" / "tuned.json").is_file()
    report.main(
        ["--systems", "systems.toml", "--rescore-dir", "exp/rescore", "--out", "RESULTS.md"]
    )
    res = json.loads((work / "results.json").read_text())
    lm = res["systems"]["lm"]
    assert lm["lm_seeds"] == [1, 2] and set(lm["tuned_per_seed"]) == {"1", "2"}
    per_seed = [
        json.loads((rd / f"seed{k}" / "metrics-test.json").read_text())["wer"] for k in (1, 2)
    ]
    cell = lm["test"]["wer"]
    assert cell["seeds"] == {"1": per_seed[0], "2": per_seed[1]}
    assert cell["value"] == pytest.approx(sum(per_seed) / 2)
    assert cell["sd"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2**0.5)
    assert "sd" not in res["systems"]["mt"]["test"]["wer"]  # one checkpoint: as before
    pair = next(
        t for t in res["paired_bootstrap"] if (t["a"], t["b"], t["metric"]) == ("lm", "mt", "wer")
    )
    assert pair["a_value"] == pytest.approx(cell["value"])
    # per gold intent: the seed mean too (the per-intent table had n/a for seeded systems)
    seed_intents = [
        json.loads((rd / f"seed{k}" / "metrics-test.json").read_text())["per_intent"]
        for k in (1, 2)
    ]
    per_intent = lm["test"]["per_intent"]
    assert set(per_intent) == set(seed_intents[0]) and per_intent
    for intent, v in per_intent.items():
        assert v["utterances"] == seed_intents[0][intent]["utterances"]
        assert v["wer"] == pytest.approx(sum(t[intent]["wer"] for t in seed_intents) / 2)
    md = (work / "RESULTS.md").read_text()
    assert (
        "## LM seeds" in md and "| + LM | test | 2 |" in md and "| + LM | test | mean ± sd |" in md
    )
    assert "| + LM, seed 1 | nlm |" in md  # tuned weights per seed

    assert set(_run().values()) == {"skipped"}
    (work / "exp/lm/lm/seed2/best.pt").write_text(
        "".join(json.dumps({"text": t, "intent": i, "slots": sl}) + "\n" for t, i, sl in MT_TRAIN)
    )
    before = (rd / "seed1" / "system.json").read_bytes()
    assert _run()["lm"] == "ran"
    assert (rd / "seed1" / "system.json").read_bytes() == before  # seed 1 was not re-run


@pytest.mark.parametrize(
    "matrix, message",
    [
        (SEEDED.replace("seeds = [1, 2]\n", ""), "has no seeds"),
        (SEEDED.replace("seeds = [1, 2]", "seeds = [1, 1]"), "named twice"),
        (SEEDED.replace("seeds = [1, 2]", 'seeds = ["a"]'), r"seeds\[0\]"),
        (SEEDED.replace("exp/lm/mt/best.pt", "exp/lm/mt/seed{seed}/best.pt", 1), "nlu_checkpoint"),
    ],
)
def test_seed_matrix_errors(matrix, message):
    import tomllib

    from rescoring.experiments import parse_experiments

    with pytest.raises(ValueError, match=message):
        parse_experiments(tomllib.loads(matrix), "m.toml")


def test_missing_seed_checkpoint_is_named(work):
    (work / "exp/lm/lm/seed1").mkdir(parents=True)
    (work / "exp/lm/lm/seed1/best.pt").write_text((work / "exp/lm/lm/best.pt").read_text())
    (work / "systems.toml").write_text(SEEDED)
    with pytest.raises(ValueError, match=r"exp/lm/lm/seed2/best.pt: not found .*lm_checkpoint"):
        _run()


def test_sets_and_excluded_systems(work):
    with pytest.raises(ValueError, match=r"nbest-extra.jsonl.gz: not found \(set 'extra'"):
        _run("--sets", "dev", "test", "extra")
    assert _run("--exclude-systems", "lm") == dict.fromkeys(("first", "oracle", "mt"), "ran")
    assert not (work / "exp/rescore/lm").exists()
    with pytest.raises(ValueError, match="'mt' is the matrix's headline"):
        _run("--exclude-systems", "mt")


def test_jobs_give_the_same_outputs_as_one_after_another(work):
    """--jobs 2: the systems and seeds rescored in two worker processes write the same files."""
    for seed in (1, 2):
        d = work / "exp/lm/lm" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "best.pt").write_text((work / "exp/lm/mt/best.pt").read_text())
    (work / "systems.toml").write_text(SEEDED)
    assert set(_run().values()) == {"ran"}
    out = _run("--jobs", "2", "--out-dir", "exp/rescore2")
    assert set(out.values()) == {"ran"}
    a, b = work / "exp/rescore", work / "exp/rescore2"
    files = sorted(p.relative_to(a) for p in a.rglob("onebest-*.jsonl.gz"))
    assert len(files) == 2 * 5  # first, oracle, lm seed 1 and 2, mt; dev and test
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert set(_run("--jobs", "2", "--out-dir", "exp/rescore2").values()) == {"skipped"}
    with pytest.raises(ValueError, match="--jobs must be >= 1"):
        _run("--jobs", "0")


def test_per_engine_breakdown_where_the_gold_names_its_tts_engine(work):
    """Gold supervisions with custom.tts_engine (prepare-snips --tts-plan): score-wer breaks
    the metrics down per engine, results.json carries them, RESULTS.md has a table."""
    p = work / "nlu_test.jsonl.gz"
    rows = [json.loads(x) for x in gzip.open(p, "rt")]
    for i, r in enumerate(rows):
        r["custom"]["tts_engine"] = ["espeak-ng", "flite"][i % 2]
    p.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode(), mtime=0))
    _run()
    m = json.loads((work / "exp/rescore/lm/metrics-test.json").read_text())
    assert set(m["per_engine"]) == {"espeak-ng", "flite"}
    assert sum(v["utterances"] for v in m["per_engine"].values()) == m["utterances"]
    assert "per_engine" not in json.loads((work / "exp/rescore/lm/metrics-dev.json").read_text())
    report.main(
        ["--systems", "systems.toml", "--rescore-dir", "exp/rescore", "--out", "RESULTS.md"]
    )
    md = (work / "RESULTS.md").read_text()
    assert "## Per TTS engine (test)" in md and "| + LM | " in md.split("## Per TTS engine")[1]
    assert "## Per TTS engine (dev)" not in md
    res = json.loads((work / "results.json").read_text())
    assert set(res["systems"]["mt"]["test"]["per_engine"]) == {"espeak-ng", "flite"}


def _marker(done: Path, stage: int, outputs: list[str]) -> None:
    from common.stages import MARKER_VERSION

    done.mkdir(exist_ok=True)
    rec = {"stage": stage, "argv": ["x"], "outputs": outputs, "version": MARKER_VERSION}
    (done / f"stage{stage}").write_text(json.dumps(rec))


def test_early_runs_of_ready_systems_then_the_rest_equal_one_full_run(work):
    """--ready-from .done --max-runs 1 (the recipe's early rescoring while LMs train or first
    passes decode): only the systems whose checkpoints and n-best lists are outputs of finished
    stages, at most one per call; the calls together write the files of one full run, and the
    full run afterwards skips everything."""
    for seed in (1, 2):
        d = work / "exp/lm/lm" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "best.pt").write_text((work / "exp/lm/mt/best.pt").read_text())
    (work / "systems.toml").write_text(SEEDED)
    done = work / ".done"
    early = ("--ready-from", ".done", "--max-runs", "1")
    with pytest.raises(ValueError, match=r"\.done: no such folder \(--ready-from"):
        _run(*early)
    # only the LM seeds are finished: every system reads the NLU checkpoint (mt), none is ready
    _marker(done, 10, ["exp/lm/lm/seed1/best.pt", "./exp/lm/lm/seed2/best.pt"])
    assert set(_run(*early).values()) == {"left"}
    assert not (work / "exp/rescore").exists() or not any((work / "exp/rescore").rglob("*.json"))
    (done / "stage10").unlink()
    _marker(done, 13, ["exp/lm/mt/best.pt"])  # the multitask LM, but the first pass still decodes
    assert set(_run(*early).values()) == {"left"}
    _marker(done, 8, ["exp/asr/m/decode/nbest-test.jsonl.gz"])  # dev's list is no stage's output
    assert set(_run(*early).values()) == {"left"}
    _marker(done, 8, [f"exp/asr/m/decode/nbest-{s}.jsonl.gz" for s in ("dev", "test")])
    # first, oracle, mt are ready
    assert _run(*early) == {"first": "ran", "oracle": "left", "lm": "left", "mt": "left"}
    assert _run(*early) == {"first": "skipped", "oracle": "ran", "lm": "left", "mt": "left"}
    assert _run(*early) == {"first": "skipped", "oracle": "skipped", "lm": "left", "mt": "ran"}
    assert _run(*early)["lm"] == "left"  # nothing ready is left to run
    _marker(done, 10, ["exp/lm/lm/seed1/best.pt", "exp/lm/lm/seed2/best.pt"])
    assert _run(*early)["lm"] == "ran"  # seed 1
    assert _run(*early)["lm"] == "ran"  # seed 2
    assert set(_run().values()) == {"skipped"}  # the stage itself: nothing left
    assert set(_run("--out-dir", "exp/rescore2").values()) == {"ran"}
    a, b = work / "exp/rescore", work / "exp/rescore2"
    files = sorted(
        p.relative_to(a)
        for p in a.rglob("*-*.json*")
        if "score-cache" not in str(p) and not p.name.startswith("set-")  # set-: paths, hashes
    )
    assert len(files) > 2 * 5 * 2
    for f in files:
        if f.name.startswith(("metrics-", "rescore-")):  # the timing differs
            ja, jb = (json.loads((d / f).read_text()) for d in (a, b))
            for j in (ja, jb):
                for k in ("hyps", "nbest", "lm_timing"):
                    j.pop(k, None)
            assert ja == jb, f
        elif f.name != "tuned.json":
            assert (a / f).read_bytes() == (b / f).read_bytes(), f
    # a system whose first pass has not even started (no lists yet) waits; the others run
    (work / "systems.toml").write_text(
        SEEDED + '\n[systems.late]\nlabel = "+ LM, later lists"\n'
        'lm_checkpoint = "exp/lm/mt/best.pt"\nnbest_dir = "exp/asr/m/decode_late"\n'
    )
    out = _run(*early)
    assert out["late"] == "left" and {out[k] for k in ("first", "oracle", "lm", "mt")} == {
        "skipped"
    }
    with pytest.raises(ValueError, match=r"decode_late/nbest-dev.jsonl.gz: not found"):
        _run()  # the stage itself needs every list
    with pytest.raises(ValueError, match="--max-runs 1 needs --jobs 1"):
        _run("--max-runs", "1", "--jobs", "2")
    with pytest.raises(ValueError, match="--max-runs must be >= 0"):
        _run("--max-runs", "-1")


def test_a_system_with_a_lexicon_waits_until_a_finished_stage_wrote_into_its_folder(work):
    """--ready-from: a system's lexicon folder (the recipe's stage 17) is ready once a finished
    stage has an output inside it; an absent folder is then no error for the other systems."""
    from rescoring.experiments import load_experiments

    (work / "systems.toml").write_text(
        MATRIX + '\n[systems.nlu]\nlabel = "+ NLU features"\nkind = "loglinear"\n'
        'feature_lms = { mt = "exp/lm/mt/best.pt" }\nlexicon_dir = "lex"\nfolds = 2\n'
    )
    done = work / ".done"
    _marker(done, 13, ["exp/lm/lm/best.pt", "exp/lm/mt/best.pt"])
    _marker(done, 8, [f"exp/asr/m/decode/nbest-{s}.jsonl.gz" for s in ("dev", "test")])
    out = _run("--ready-from", ".done")  # no lex/ at all: nlu waits, the rest run
    assert out["nlu"] == "left" and out["mt"] == "ran"
    _marker(done, 17, ["lexx/lexicons.json"])  # a neighbour's name is not inside lex/
    exps = load_experiments(Path("systems.toml"), [])
    cfg = systems.SystemsConfig(systems=Path("systems.toml"), nbest_dir=Path("exp/asr/m/decode"))
    runs = [(exps.systems["nlu"], None)]
    assert systems.split_ready(cfg, exps, runs, done) == ([], runs)
    _marker(done, 17, ["lex/lexicons.json"])
    assert systems.split_ready(cfg, exps, runs, done) == (runs, [])
