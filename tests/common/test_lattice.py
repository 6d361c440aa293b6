"""The one lattice module: the writer decoding uses, the reader rescoring uses (archives built
here with kaldifst; convention in rescoring/README.md)."""

import math

import kaldifst
import pytest

from common.io import InputError
from common.lattice import first_pass_score, read_lattice_archive, write_nbest_lattices
from rescoring.nbest import load_nbest

WORDS = {"<eps>": 0, "play": 1, "jazz": 2, "jas": 3, "stop": 4}


def _arc(fst, src, label, cost, dst):
    fst.add_arc(state=src, arc=kaldifst.StdArc(label, label, cost, dst))


def _prefix_tree():
    """Paths: 'play jazz' (cost 1.0 + 0.5), 'play jas' (1.0 + 1.0 + final 0.25),
    'play jazz' again via another chain (cost 3.0), and an empty path (eps, cost 4.0)."""
    f = kaldifst.StdVectorFst()
    s = [f.add_state() for _ in range(7)]
    f.start = s[0]
    _arc(f, s[0], WORDS["play"], 1.0, s[1])  # shared prefix, cost split over arcs
    _arc(f, s[1], WORDS["jazz"], 0.5, s[2])
    _arc(f, s[1], WORDS["jas"], 1.0, s[3])
    _arc(f, s[0], WORDS["play"], 3.0, s[4])  # duplicate word sequence
    _arc(f, s[4], WORDS["jazz"], 0.0, s[5])
    _arc(f, s[0], 0, 4.0, s[6])  # empty hypothesis
    f.set_final(state=s[2], weight=0.0)
    f.set_final(state=s[3], weight=0.25)
    f.set_final(state=s[5], weight=0.0)
    f.set_final(state=s[6], weight=0.0)
    return f


def _write(tmp_path, fsts, name="lattices-dev.ark", words="words-dev.txt"):
    (tmp_path / words).write_text("".join(f"{w} {i}\n" for w, i in WORDS.items()))
    writer = kaldifst.VectorFstWriter(f"ark:{tmp_path / name}")
    for key, f in fsts.items():
        writer.write(key, f)
    writer.close()
    return tmp_path / name, tmp_path / words


def test_paths_costs_and_merging(tmp_path):
    ark, words = _write(tmp_path, {"u1": _prefix_tree()})
    got = read_lattice_archive(ark, words)["u1"]
    merged = math.log(math.exp(-1.5) + math.exp(-3.0))
    assert [w for w, _ in got] == ["play jazz", "play jas", ""]
    assert [s for _, s in got] == pytest.approx([merged, -2.25, -4.0])


def test_load_nbest_reads_archive_with_refs(tmp_path):
    ark, _ = _write(tmp_path, {"u1": _prefix_tree()})
    refs = tmp_path / "text"
    refs.write_text("u1 play jazz\n")
    (rec,) = load_nbest(ark, refs)
    assert rec.id == "u1" and rec.ref == "play jazz" and rec.hyps[0].words == "play jazz"


def test_asr_stage_convention_reads_back(tmp_path):
    """Linear chains with the cost on the first arc, as decode-asr writes them."""
    nbest = {"u1": [("play jazz", -1.5), ("play jas", -2.0)], "u2": [("", -0.5)]}
    write_nbest_lattices(tmp_path / "lattices-dev.ark", tmp_path / "words-dev.txt", nbest)
    got = read_lattice_archive(tmp_path / "lattices-dev.ark", tmp_path / "words-dev.txt")
    assert got.keys() == nbest.keys()
    for k in nbest:
        assert [w for w, _ in got[k]] == [w for w, _ in nbest[k]]
        assert [s for _, s in got[k]] == pytest.approx([s for _, s in nbest[k]])


def test_bad_lattices(tmp_path):
    cyc = kaldifst.StdVectorFst()
    a, b = cyc.add_state(), cyc.add_state()
    cyc.start = a
    _arc(cyc, a, 1, 0.0, b)
    _arc(cyc, b, 2, 0.0, a)
    cyc.set_final(state=b, weight=0.0)
    ark, words = _write(tmp_path, {"u1": cyc})
    with pytest.raises(InputError, match=r"lattices-dev\.ark\[u1\]: lattice has a cycle"):
        read_lattice_archive(ark, words)

    dead = kaldifst.StdVectorFst()
    a, b = dead.add_state(), dead.add_state()
    dead.start = a
    _arc(dead, a, 1, 0.0, b)
    ark, words = _write(tmp_path, {"u1": dead})
    with pytest.raises(InputError, match="no complete path"):
        read_lattice_archive(ark, words)

    unk = kaldifst.StdVectorFst()
    a, b = unk.add_state(), unk.add_state()
    unk.start = a
    _arc(unk, a, 99, 0.0, b)
    unk.set_final(state=b, weight=0.0)
    ark, words = _write(tmp_path, {"u1": unk})
    with pytest.raises(InputError, match="word id 99 is not in the symbol table"):
        read_lattice_archive(ark, words)

    words.write_text("<eps> 0\nplay\n")
    with pytest.raises(InputError, match=r"words-dev\.txt:2: expected 'word id'"):
        read_lattice_archive(ark, words)


def test_writer_round_trip_keeps_ties_in_nbest_order(tmp_path):
    """Equal scores come back in the writer's (n-best) order, float32 weights within 1e-6."""
    nbest = {
        "b": [("stop", -1.0), ("play jazz", -2.5), ("play jas", -2.5), ("", -2.5)],
        "a": [("jazz", -0.123456789)],
    }
    ark, words = tmp_path / "lattices-dev.ark", tmp_path / "words-dev.txt"
    write_nbest_lattices(ark, words, nbest)
    assert words.read_text() == "<eps> 0\njas 1\njazz 2\nplay 3\nstop 4\n"
    assert not list(tmp_path.glob(".*"))  # the temp file was renamed
    got = read_lattice_archive(ark, words)
    assert list(got) == ["a", "b"]  # sorted ids
    for k, hyps in nbest.items():
        assert [w for w, _ in got[k]] == [w for w, _ in hyps]
        assert [s for _, s in got[k]] == pytest.approx([s for _, s in hyps], rel=1e-6)


def test_first_pass_score_adds_the_bonuses_present():
    """am + context + length, in the order of asr.search.Hypothesis.total; None = no bonus."""
    assert first_pass_score(-1.5) == -1.5
    assert first_pass_score(-1.5, None, 0.25) == -1.5 + 0.25
    assert first_pass_score(-1.5, 1.0) == -1.5 + 1.0
    assert first_pass_score(0.1, 0.2, 0.6) == (0.1 + 0.6) + 0.2  # not 0.1 + 0.2 + 0.6: 0.9
