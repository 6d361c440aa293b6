"""rare-word-coverage: each rare reference token in one lexicon group, found or not per first pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rescoring.coverage import CoverageConfig, coverage
from rescoring.coverage import main as coverage_main
from tests.rescoring.conftest import write_lines


def _setup(tmp_path: Path) -> dict:
    lex = tmp_path / "lex"
    lex.mkdir()
    (lex / "global.txt").write_text("hey jude\t1\nboston\t1\n")
    (lex / "intent-PlayMusic.txt").write_text("hey jude\t1\n")
    (lex / "intent-GetWeather.txt").write_text("boston\t1\n")
    from lhotse import SupervisionSegment, SupervisionSet

    rows = [("u1", "play hey jude jude"), ("u2", "weather in boston zzz")]
    gold = tmp_path / "gold.jsonl.gz"
    SupervisionSet.from_segments(
        SupervisionSegment(id=u, recording_id=u, start=0, duration=1.0, text=t) for u, t in rows
    ).to_file(gold)
    counts = tmp_path / "counts.txt"
    counts.write_text("play 9\nweather 9\nin 9\nhey 9\n")  # rare: jude, boston, zzz
    lists = tmp_path / "lists.tsv"
    lists.write_text("u1\tintent-PlayMusic\nu2\tintent-PlayMusic\n")  # u2: wrong intent

    def nb(name, hyps1, hyps2):
        return write_lines(
            tmp_path / f"{name}.jsonl",
            [
                {
                    "id": u,
                    "ref": t,
                    "hyps": [{"words": w, "tokens": [], "am_score": 0.0} for w in h],
                }
                for (u, t), h in zip(rows, (hyps1, hyps2), strict=True)
            ],
        )

    a = nb("a", ["play hey dude", "play hey jude"], ["weather in austin"])
    b = nb("b", ["play hey jude jude"], ["weather in boston", "weather in boston zzz"])
    return {"lex": lex, "gold": gold, "counts": counts, "lists": lists, "a": a, "b": b}


def test_groups_and_counts(tmp_path):
    s = _setup(tmp_path)
    out = tmp_path / "cov.md"
    res = coverage(
        CoverageConfig(
            gold=s["gold"],
            word_counts=s["counts"],
            threshold=5,
            lexicon_dir=s["lex"],
            lists=s["lists"],
            nbest=[f"a={s['a']}", f"b={s['b']}"],
            out=out,
        )
    )
    g = res["groups"]
    # u1: jude x2 in its list; u2: boston in another list only (its list is PlayMusic); zzz in none
    assert g["in its list"]["a"] == {"tokens": 2, "in_1best": 0, "in_nbest": 1}
    assert g["in its list"]["b"] == {"tokens": 2, "in_1best": 2, "in_nbest": 2}
    assert g["in another list only"]["a"] == {"tokens": 1, "in_1best": 0, "in_nbest": 0}
    assert g["in another list only"]["b"] == {"tokens": 1, "in_1best": 1, "in_nbest": 1}
    assert g["in no list"]["b"] == {"tokens": 1, "in_1best": 0, "in_nbest": 1}
    md = out.read_text()
    assert "| all | 4 (100.0%) | 0.0% | 25.0% | 75.0% | 100.0% |" in md
    assert json.loads(Path(f"{out}.json").read_text())["groups"] == g


def test_errors_name_the_input(tmp_path, capsys):
    s = _setup(tmp_path)
    base = ["--gold", str(s["gold"]), "--word-counts", str(s["counts"])]
    base += ["--lexicon-dir", str(s["lex"]), "--out", str(tmp_path / "c.md")]
    s["lists"].write_text("u1\tintent-Nope\n")
    for extra, msg in (
        (["--nbest", f"a{s['a']}"], "NAME=PATH"),
        (["--nbest", f"a={s['a']}", "--lists", str(s["lists"])], "unknown list 'intent-Nope'"),
    ):
        with pytest.raises(SystemExit) as e:
            coverage_main(base + extra)
        assert e.value.code == 2
        assert msg in capsys.readouterr().err.strip().splitlines()[-1]
    write_lines(
        tmp_path / "short.jsonl",
        [{"id": "u1", "ref": "x", "hyps": [{"words": "x", "tokens": [], "am_score": 0.0}]}],
    )
    with pytest.raises(SystemExit):
        coverage_main(base + ["--nbest", f"a={tmp_path / 'short.jsonl'}"])
    assert "no n-best list for utterance u2" in capsys.readouterr().err
    assert not (tmp_path / "c.md").exists()
