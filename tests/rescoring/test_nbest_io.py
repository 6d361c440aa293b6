"""Reading n-best lists: ours, the external TSV form, lattices; malformed input."""

import gzip
import json

import pytest

from common.io import InputError
from rescoring.nbest import load_nbest, write_nbest


def _write_jsonl(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


GOOD = json.dumps(
    {"id": "u1", "ref": "a b", "hyps": [{"words": "a b", "tokens": [3, 4], "am_score": -1.0}]}
)


@pytest.mark.parametrize(
    "bad, msg",
    [
        ("{not json", r"nb\.jsonl:2: invalid JSON"),
        (
            json.dumps({"id": "u2", "hyps": [{"words": "a", "am_score": 0}]}),
            r"nb\.jsonl:2 \(u2\): missing field 'ref'",
        ),
        (
            json.dumps({"id": "u2", "ref": "a", "hyps": []}),
            r"nb\.jsonl:2 \(u2\): field 'hyps' must be a non-empty list of hypotheses, got \[\]",
        ),
        (
            json.dumps({"id": "u2", "ref": "a", "hyps": [{"words": "a"}]}),
            r"nb\.jsonl:2 \(u2\): missing field 'hyps\[0\]\.am_score'",
        ),
        (
            json.dumps({"id": "u2", "ref": "a", "hyps": [{"words": "a", "am_score": "x"}]}),
            r"nb\.jsonl:2 \(u2\): field 'hyps\[0\]\.am_score' must be a number, got \"x\"",
        ),
        (GOOD, r"nb\.jsonl:2: duplicate utterance id 'u1' \(first at line 1\)"),
    ],
)
def test_malformed_nbest(tmp_path, bad, msg):
    p = _write_jsonl(tmp_path / "nb.jsonl", [GOOD, bad])
    with pytest.raises(InputError, match=msg):
        load_nbest(p)


def test_roundtrip_gz(tmp_path):
    recs = load_nbest(_write_jsonl(tmp_path / "nb.jsonl", [GOOD]))
    recs[0].hyps[0].lm_score = -2.5
    write_nbest(tmp_path / "out.jsonl.gz", recs)
    obj = json.loads(gzip.open(tmp_path / "out.jsonl.gz", "rt").readline())
    assert obj["hyps"][0]["lm_score"] == -2.5 and "total" not in obj["hyps"][0]


def test_external_tsv(tmp_path):
    refs = tmp_path / "text"
    refs.write_text("u1 play jazz\nu2 stop\n")
    tsv = tmp_path / "other.tsv"
    tsv.write_text("u1\tplay jas\t-3.0\nu2\t\t-9\nu1\tplay jazz\t-2.5\n")
    recs = load_nbest(tsv, refs)
    assert [(r.id, [h.words for h in r.hyps]) for r in recs] == [
        ("u1", ["play jazz", "play jas"]),
        ("u2", [""]),
    ]
    tsv.write_text("u1\tplay jazz\n")
    with pytest.raises(InputError, match=r"other\.tsv:1: expected 'utt_id<TAB>text<TAB>score'"):
        load_nbest(tsv, refs)
    tsv.write_text("u9\tplay\t-1\n")
    with pytest.raises(InputError, match="no reference for utterance"):
        load_nbest(tsv, refs)
    with pytest.raises(InputError, match="pass --refs"):
        load_nbest(tsv)


def test_lattices(tmp_path):
    from common.lattice import write_nbest_lattices

    write_nbest_lattices(
        tmp_path / "lattices-dev.ark",
        tmp_path / "words-dev.txt",
        {"u1": [("play jazz", -1.5), ("play jas", -2.0)], "u2": [("", -0.5)]},
    )
    refs = tmp_path / "text"
    refs.write_text("u1 play jazz\nu2 stop\n")
    recs = {r.id: r for r in load_nbest(tmp_path / "lattices-dev.ark", refs)}
    assert [(h.words, h.am_score) for h in recs["u1"].hyps] == [
        ("play jazz", pytest.approx(-1.5)),
        ("play jas", pytest.approx(-2.0)),
    ]
    assert recs["u2"].hyps[0].words == "" and recs["u2"].ref == "stop"


def test_cli_reports_bad_line_and_scorer_errors(tmp_path, capsys):
    from rescoring import rescore

    p = _write_jsonl(tmp_path / "nb.jsonl", [GOOD, "{not json"])
    with pytest.raises(SystemExit) as e:
        rescore.main(["--nbest", str(p), "--scorer", "none", "--out-dir", str(tmp_path)])
    assert e.value.code != 0
    assert "nb.jsonl:2" in str(e.value) + capsys.readouterr().err

    good = _write_jsonl(tmp_path / "ok.jsonl", [GOOD])
    for opts, msg in (
        (["--scorer", "trigram"], "unknown scorer 'trigram'"),
        (["--scorer", "nlm"], "needs --lm-checkpoint"),
    ):
        with pytest.raises(SystemExit) as e:
            rescore.main(["--nbest", str(good), "--out-dir", str(tmp_path), *opts])
        assert msg in str(e.value) + capsys.readouterr().err


def test_context_score_of_a_biased_first_pass_is_kept(tmp_path):
    from common.io import write_jsonl
    from rescoring.nbest import read_nbest_jsonl

    p = tmp_path / "nbest.jsonl"
    hyp = {"words": "play jazz", "tokens": [5, 6], "am_score": -1.5, "context_score": 2.0}
    write_jsonl(p, [{"id": "u1", "ref": "play jazz", "hyps": [hyp]}])
    (rec,) = list(read_nbest_jsonl(p))
    assert rec.hyps[0].context_score == 2.0 and rec.hyps[0].am_score == -1.5
    assert rec.to_json()["hyps"][0]["context_score"] == 2.0
    write_jsonl(p, [{"id": "u1", "ref": "x", "hyps": [dict(hyp, context_score="big")]}])
    with pytest.raises(InputError, match="context_score"):
        list(read_nbest_jsonl(p))


def test_length_score_of_the_first_pass_is_kept_and_ranks(tmp_path):
    from common.io import write_jsonl
    from rescoring.nbest import read_nbest_jsonl

    p = tmp_path / "nbest.jsonl"
    hyp = {"words": "play jazz", "tokens": [5, 6], "am_score": -1.5, "length_score": 1.0}
    write_jsonl(p, [{"id": "u1", "ref": "play jazz", "hyps": [dict(hyp, context_score=0.25)]}])
    (rec,) = list(read_nbest_jsonl(p))
    assert rec.hyps[0].length_score == 1.0
    assert rec.hyps[0].first_pass_score == -1.5 + 0.25 + 1.0
    assert rec.to_json()["hyps"][0]["length_score"] == 1.0
    write_jsonl(p, [{"id": "u1", "ref": "x", "hyps": [dict(hyp, length_score=float("nan"))]}])
    with pytest.raises(InputError, match="length_score"):
        list(read_nbest_jsonl(p))
