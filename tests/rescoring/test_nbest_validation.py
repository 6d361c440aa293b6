"""N-best fields are validated by type at the boundary, never coerced (issue 10, item 1)."""

from __future__ import annotations

import json

import kaldifst
import pytest

from common.io import InputError
from rescoring import rescore
from rescoring.nbest import load_nbest
from tests.rescoring.conftest import write_lines

OK_HYP = {"words": "will it rain", "tokens": [4, 5], "am_score": -1.0}


def _record(**hyp_fields) -> dict:
    """u1 with a bad second hypothesis; the first is fine."""
    return {"id": "u1", "ref": "will it rain", "hyps": [OK_HYP, {**OK_HYP, **hyp_fields}]}


@pytest.mark.parametrize(
    "record, msg",
    [
        (_record(words=None), r"field 'hyps\[1\]\.words' must be a string, got null"),
        (
            _record(words=["will", "it", "rain"]),
            r"field 'hyps\[1\]\.words' must be a string, got \[\"will\"",
        ),
        (_record(words=3), r"field 'hyps\[1\]\.words' must be a string, got 3"),
        (_record(tokens=["4"]), r"field 'hyps\[1\]\.tokens' must be a list of integers"),
        (_record(tokens=[True]), r"field 'hyps\[1\]\.tokens' must be a list of integers"),
        (_record(tokens=7), r"field 'hyps\[1\]\.tokens' must be a list of integers, got 7"),
        (_record(am_score=True), r"field 'hyps\[1\]\.am_score' must be a number, got true"),
        (_record(am_score="-1.0"), r"field 'hyps\[1\]\.am_score' must be a number, got \"-1\.0\""),
        (_record(am_score=None), r"field 'hyps\[1\]\.am_score' must be a number, got null"),
        (_record(am_score=float("nan")), r"field 'hyps\[1\]\.am_score' must be a finite number"),
        (_record(lm_score="x"), r"field 'hyps\[1\]\.lm_score' must be a number"),
        (_record(total=False), r"field 'hyps\[1\]\.total' must be a number, got false"),
        ({**_record(), "ref": None}, r"field 'ref' must be a string, got null"),
        ({**_record(), "ref": ["a"]}, r"field 'ref' must be a string"),
        ({**_record(), "id": ""}, r"field 'id' must be a non-empty string"),
        ({**_record(), "id": 17}, r"field 'id' must be a non-empty string, got 17"),
        ({**_record(), "hyps": {"words": "a"}}, r"field 'hyps' must be a non-empty list"),
        ({**_record(), "hyps": ["will it rain"]}, r"field 'hyps\[0\]' must be an object"),
        ({"id": "u1", "ref": "a"}, r"missing field 'hyps'"),
    ],
)
def test_bad_field_types(tmp_path, record, msg):
    p = write_lines(tmp_path / "nb.jsonl", [json.dumps(record)])
    with pytest.raises(InputError, match=r"nb\.jsonl:1( \(u1\))?: " + msg):
        load_nbest(p)


def test_null_words_is_not_chosen_as_none(tiny, capsys):
    """The defect: ``"words": null`` became the hypothesis "None" and could win."""
    rec = {
        "id": "t1",
        "ref": "none",
        "hyps": [{"words": None, "am_score": -0.1}, {"words": "play", "am_score": -5.0}],
    }
    p = write_lines(tiny / "nb.jsonl", [rec])
    with pytest.raises(SystemExit) as e:
        rescore.main(["--nbest", str(p), "--scorer", "none", "--out-dir", str(tiny / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "nb.jsonl:1 (t1): field 'hyps[0].words' must be a string, got null" in err
    assert not (tiny / "out" / "onebest-test.jsonl.gz").exists()


def test_max_hyps(tmp_path):
    rec = {"id": "u1", "ref": "a", "hyps": [{"words": f"w{i}", "am_score": -i} for i in range(5)]}
    p = write_lines(tmp_path / "nb.jsonl", [rec])
    assert len(load_nbest(p, max_hyps=5)[0].hyps) == 5
    with pytest.raises(InputError, match=r"nb\.jsonl:1 \(u1\): 5 hypotheses .* --max-hyps 4"):
        load_nbest(p, max_hyps=4)
    refs = tmp_path / "text"
    refs.write_text("u1 a\n")
    tsv = tmp_path / "x.tsv"
    tsv.write_text("".join(f"u1\tw{i}\t-{i}\n" for i in range(5)))
    with pytest.raises(InputError, match=r"x\.tsv:4 \(u1\): 4 hypotheses .* --max-hyps 3"):
        load_nbest(tsv, refs, max_hyps=3)


@pytest.mark.parametrize(
    "content, msg",
    [
        ("u1\tplay\tabc\n", r"x\.tsv:1 \(u1\): field 'score' must be a number, got 'abc'"),
        ("u1\tplay\tinf\n", r"x\.tsv:1 \(u1\): field 'score' must be a finite number"),
        ("u1\tplay\t-1\tx\n", r"x\.tsv:1: expected 'utt_id<TAB>text<TAB>score', got 4 fields"),
        ("u1 play -1\n", r"x\.tsv:1: expected 'utt_id<TAB>text<TAB>score', got 1 fields"),
        ("u1\tplay\t-1\n\tplay\t-2\n", r"x\.tsv:2: empty utterance id"),
        ("u1\tplay\t-1\n".encode("utf-16"), r"x\.tsv:1: not UTF-8 text"),
        ("u1\tplay\t-1\n".encode("utf-16-le"), r"x\.tsv:1: NUL characters .* UTF-16"),
        # common.io names the line where the decoder's chunk starts (line 1 in a small file)
        ("u1\tplay\t-1\nu1\tcafé\t-2\n".encode("latin-1"), r"x\.tsv:\d+: not UTF-8 text"),
    ],
)
def test_bad_tsv(tmp_path, content, msg):
    refs = tmp_path / "text"
    refs.write_text("u1 play\n")
    tsv = tmp_path / "x.tsv"
    if isinstance(content, str):
        tsv.write_text(content, encoding="utf-8")
    else:
        tsv.write_bytes(content)
    with pytest.raises(InputError, match=msg):
        load_nbest(tsv, refs)


def test_tsv_utf8_bom_and_crlf_are_read(tmp_path):
    refs = tmp_path / "text"
    refs.write_text("u1 play jazz\n")
    tsv = tmp_path / "x.tsv"
    tsv.write_bytes("\ufeffu1\tplay jas\t-3\r\nu1\tplay jazz\t-2\r\n".encode())
    (r,) = load_nbest(tsv, refs)
    assert r.id == "u1" and [h.words for h in r.hyps] == ["play jazz", "play jas"]


def test_refs_are_validated(tmp_path):
    tsv = tmp_path / "x.tsv"
    tsv.write_text("u1\tplay\t-1\n")
    refs = tmp_path / "text"
    refs.write_text("u1 play\nu2 stop\nu1 pause\n")
    with pytest.raises(
        InputError, match=r"text:3: duplicate utterance id 'u1' \(first at line 1\)"
    ):
        load_nbest(tsv, refs)
    sup = write_lines(tmp_path / "sup.jsonl", [{"id": "u1", "text": None}])
    with pytest.raises(InputError, match=r"sup\.jsonl:1 \(u1\): field 'text' must be a string"):
        load_nbest(tsv, sup)


def _lattice(tmp_path, cost: float, words_table: bytes | None = None):
    f = kaldifst.StdVectorFst()
    s0, s1 = f.add_state(), f.add_state()
    f.start = s0
    f.add_arc(state=s0, arc=kaldifst.StdArc(1, 1, cost, s1))
    f.set_final(state=s1, weight=0.0)
    w = kaldifst.VectorFstWriter(f"ark:{tmp_path / 'lattices-dev.ark'}")
    w.write("u1", f)
    w.close()
    (tmp_path / "words-dev.txt").write_bytes(words_table or b"<eps> 0\nplay 1\n")
    refs = tmp_path / "text"
    refs.write_text("u1 play\n")
    return tmp_path / "lattices-dev.ark", refs


@pytest.mark.parametrize(
    "cost, table, msg",
    [
        (
            float("nan"),
            None,
            r"lattices-dev\.ark\[u1\]: path of 'play' has a cost that is not finite",
        ),
        (1.0, "<eps> 0\ncafé 1\n".encode("latin-1"), r"words-dev\.txt:\d+: not UTF-8 text"),
        (1.0, b"<eps> 0\nplay 1\nstop 1\n", r"words-dev\.txt:3: id 1 is 'stop' here and 'play'"),
        (1.0, b"<eps> 0\nplay one\n", r"words-dev\.txt:2: expected 'word id'"),
    ],
)
def test_bad_lattice_inputs(tmp_path, cost, table, msg):
    ark, refs = _lattice(tmp_path, cost, table)
    with pytest.raises(InputError, match=msg):
        load_nbest(ark, refs)


def test_lattice_max_hyps(tmp_path):
    ark, refs = _lattice(tmp_path, 1.0)
    assert load_nbest(ark, refs, max_hyps=1)[0].hyps[0].words == "play"
    f = kaldifst.StdVectorFst()
    s = [f.add_state() for _ in range(3)]
    f.start = s[0]
    f.add_arc(state=s[0], arc=kaldifst.StdArc(1, 1, 1.0, s[1]))
    f.add_arc(state=s[0], arc=kaldifst.StdArc(0, 0, 2.0, s[2]))
    f.set_final(state=s[1], weight=0.0)
    f.set_final(state=s[2], weight=0.0)
    w = kaldifst.VectorFstWriter(f"ark:{ark}")
    w.write("u1", f)
    w.close()
    with pytest.raises(InputError, match=r"lattices-dev\.ark\[u1\]: 2 hypotheses .* --max-hyps 1"):
        load_nbest(ark, refs, max_hyps=1)
