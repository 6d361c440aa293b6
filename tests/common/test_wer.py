"""The one word-error module: counts agree with jiwer; the rare-word rule; icefall files."""

import random

import jiwer
import pytest

from common.io import InputError
from common.wer import (
    EPS,
    align,
    compute_wer,
    count_errors,
    is_rare,
    read_word_counts,
    write_results,
)


def test_error_counts_agree_with_jiwer():
    """kaldialign and jiwer may choose different equally cheap alignments, never other totals."""
    rng = random.Random(0)
    vocab = "a b c d e f".split()
    for _ in range(2000):
        ref = rng.choices(vocab, k=rng.randint(1, 9))
        hyp = rng.choices(vocab, k=rng.randint(1, 9))
        out = jiwer.process_words(" ".join(ref), " ".join(hyp))
        ours = count_errors(ref, hyp)
        assert ours.errors == out.substitutions + out.deletions + out.insertions, (ref, hyp)


def test_alignment_and_kaldi_line():
    assert align("a b c".split(), "a x c d".split()) == [
        ("a", "a"),
        ("b", "x"),
        ("c", "c"),
        (EPS, "d"),
    ]
    s = compute_wer([("u1", "a b c".split(), "a x c d".split()), ("u2", ["a"], [])])
    assert s.kaldi_line() == "%WER 75.00% [ 3 / 4, 1 ins, 1 del, 1 sub ]"


def test_rare_rule_counts_oov_as_rare(tmp_path):
    p = tmp_path / "word_counts.txt"
    p.write_text("play 9\nzurich 1\n")
    counts = read_word_counts(p)
    assert not is_rare("play", counts, 5) and is_rare("zurich", counts, 5)
    assert is_rare("never-seen", counts, 5) and not is_rare("never-seen", counts, 0)
    p.write_text("play 9\nzurich one\n")
    with pytest.raises(InputError, match=r"word_counts.txt:2: expected 'word count'"):
        read_word_counts(p)


def test_icefall_files(tmp_path):
    write_results(tmp_path, "test", "greedy", [("u1", "a b".split(), "a c".split())])
    errs = (tmp_path / "errs-test-greedy.txt").read_text()
    assert errs.startswith("%WER 50.00% [ 1 / 2, 0 ins, 0 del, 1 sub ]")
    assert "u1:\ta (b->c)" in errs and "1   b -> c" in errs
    assert (
        tmp_path / "wer-summary-test-greedy.txt"
    ).read_text() == "settings\tWER\ngreedy\t50.00\n"
