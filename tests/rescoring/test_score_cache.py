"""ScoreCache (rescoring/scorers.py): a hit is the same computation's floats, keyed by the
scorer's identity and the whole sentence list; unusable entries are scored again; the
extract-features LM feature reuses what tune-rescoring scored."""

from __future__ import annotations

import gzip
import json
import logging

import pytest

from rescoring import features as feats_mod
from rescoring import tune
from rescoring.features import read_features
from rescoring.nbest import load_nbest
from rescoring.scorers import BigramLM, NoLM, ScoreCache, score_nbest
from tests.rescoring.standin_lm import StandInLMScorer
from tests.rescoring.test_loglinear import standin  # noqa: F401  (fixture)

SENTS = ["play hey jude", "book a table", "play", "zzz unseen words"]


class Counting(BigramLM):
    """BigramLM that counts its score calls."""

    def __init__(self, checkpoint):
        super().__init__(checkpoint)
        self.calls = 0

    def score(self, sentences):
        self.calls += 1
        return super().score(sentences)


@pytest.fixture()
def text(tmp_path):
    p = tmp_path / "lm.txt"
    p.write_text("play hey jude\nbook a table\nplay the song\n")
    return p


def test_hit_is_the_same_floats_without_scoring(text, tmp_path):
    cache = ScoreCache(tmp_path / "cache")
    lm = Counting(text)
    first, hit = cache.scores(lm, SENTS)
    assert not hit and lm.calls == 1 and first == BigramLM(text).score(SENTS)
    again, hit = cache.scores(Counting(text), SENTS)
    assert hit and again == first  # exact floats (JSON round-trips Python floats)
    assert len(list((tmp_path / "cache").iterdir())) == 1
    # another list (order or content) is another key
    _, hit = cache.scores(lm, SENTS[::-1])
    assert not hit and lm.calls == 2


def test_another_model_is_a_miss(text, tmp_path):
    cache = ScoreCache(tmp_path / "cache")
    cache.scores(BigramLM(text), SENTS)
    text.write_text("play hey jude\n")  # the "checkpoint" changed at the same path
    lm = Counting(text)
    scores, hit = cache.scores(lm, SENTS)
    assert not hit and lm.calls == 1 and scores == BigramLM(text).score(SENTS)


def test_no_identity_is_not_cached(tmp_path):
    cache = ScoreCache(tmp_path / "cache")
    assert cache.scores(NoLM(), SENTS) == ([0.0] * 4, False)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "content",
    [b"not gzip", gzip.compress(b"{broken"), gzip.compress(b'{"identity": {}, "scores": []}')],
)
def test_unusable_entry_is_scored_again_and_replaced(text, tmp_path, caplog, content):
    cache = ScoreCache(tmp_path / "cache")
    good, _ = cache.scores(BigramLM(text), SENTS)
    (entry,) = (tmp_path / "cache").iterdir()
    entry.write_bytes(content)
    lm = Counting(text)
    with caplog.at_level(logging.WARNING):
        scores, hit = cache.scores(lm, SENTS)
    assert not hit and lm.calls == 1 and scores == good
    assert f"{entry}: unusable score-cache entry" in caplog.text
    assert cache.scores(lm, SENTS) == (good, True)  # replaced by a good entry


def test_score_nbest_with_and_without_cache(recipe, tmp_path):
    lm = BigramLM(recipe / "lm.txt")
    plain = load_nbest(recipe / "nbest-dev.jsonl")
    score_nbest(plain, lm)
    for expect_hit in (False, True):
        cached = load_nbest(recipe / "nbest-dev.jsonl")
        stats = score_nbest(cached, lm, ScoreCache(tmp_path / "cache"))
        assert stats["cached"] is expect_hit
        assert [h.lm_score for r in cached for h in r.hyps] == [
            h.lm_score for r in plain for h in r.hyps
        ]


def test_features_reuse_what_tuning_scored(recipe, standin, tmp_path):  # noqa: F811
    """tune-rescoring and extract-features of one n-best and one checkpoint: the LM runs once,
    and the features equal those extracted without a cache."""
    cache = tmp_path / "cache"
    nbest, ckpt = recipe / "nbest-dev.jsonl", recipe / "mt.jsonl"
    tune.main(
        ["--nbest", str(nbest), "--scorer", "nlm", "--lm-checkpoint", str(ckpt)]
        + ["--out-dir", str(tmp_path / "tuned"), "--set-name", "dev", "--score-cache", str(cache)]
        + ["--lm-scale-max", "1", "--lm-scale-step", "0.5", "--word-bonus-max", "1"]
    )
    calls = len(StandInLMScorer.calls)
    assert calls > 0
    base = ["--nbest", str(nbest), "--lm", f"mt={ckpt}", "--nlu-checkpoint", str(ckpt)]
    feats_mod.main([*base, "--out", str(tmp_path / "a.jsonl.gz"), "--score-cache", str(cache)])
    assert len(StandInLMScorer.calls) == calls  # every LM score came from the cache
    feats_mod.main([*base, "--out", str(tmp_path / "b.jsonl.gz")])
    assert len(StandInLMScorer.calls) > calls
    a, b = read_features(tmp_path / "a.jsonl.gz"), read_features(tmp_path / "b.jsonl.gz")
    assert [r.to_json() for r in a.records] == [r.to_json() for r in b.records]
    entry = json.loads(gzip.decompress(next(cache.iterdir()).read_bytes()))
    assert entry["identity"]["scorer"] == "nlm" and entry["identity"]["threads"] >= 1
