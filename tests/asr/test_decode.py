"""Decoding: search methods agree, n-best records follow docs/INTERFACES.md, lattices round-trip,
result files are written, averaging works."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch

from asr.average import AverageConfig, average
from asr.decode import DecodeConfig, first_pass_total, load_transducer, run, to_nbest
from asr.search import SEARCH_METHODS, Hypothesis
from common.lattice import read_lattice_archive as read_nbest_lattices

from .conftest import tiny_cfg


class _Tok:
    def decode(self, ids):
        return " ".join({1: "a", 2: "b", 3: "a"}.get(i, "x") for i in ids)


def test_to_nbest_merges_identical_words():
    hyps = [Hypothesis((1,), -1.0), Hypothesis((3,), -1.0), Hypothesis((2,), -0.5)]
    nb = to_nbest(hyps, _Tok(), 8)
    assert [h["words"] for h in nb] == ["a", "b"]  # log(2 e^-1) = -0.307 > -0.5
    assert abs(nb[0]["am_score"] - (-1.0 + torch.log(torch.tensor(2.0)).item())) < 1e-4


def test_to_nbest_ranks_by_the_search_score_with_its_length_bonus():
    """ "b b" (am -1.0, bonus 2 x 0.6) outranks "a" (am -0.5, bonus 0.6); the length score of a
    merged word sequence is that of its best-ranked hypothesis."""
    hyps = [
        Hypothesis((1,), -0.5, length_score=0.6),
        Hypothesis((2, 2), -1.0, length_score=1.2),
        Hypothesis((3,), -3.0, length_score=0.6),  # "a" again
    ]
    nb = to_nbest(hyps, _Tok(), 8, length=True)
    assert [(h["words"], h["length_score"]) for h in nb] == [("b b", 1.2), ("a", 0.6)]
    assert [h["tokens"] for h in nb] == [[2, 2], [1]]
    assert "length_score" not in to_nbest(hyps, _Tok(), 8)[0]


def test_first_pass_total_is_the_ranking_score_of_each_record_form():
    """The lattices' path score: am_score plus whichever bonuses the search used (and the
    record therefore carries); the records come out in the order of that total."""
    for context in (0.0, 1.0):
        for length in (0.0, 1.0):
            hyps = [
                Hypothesis((1,), -0.5, context_score=0.25 * context, length_score=0.6 * length),
                Hypothesis((2, 2), -1.0, context_score=1.0 * context, length_score=1.2 * length),
            ]
            nb = to_nbest(hyps, _Tok(), 8, context=context > 0, length=length > 0)
            by_words = {"a": hyps[0], "b b": hyps[1]}
            for h in nb:
                # the same sum in the same order (common.lattice.first_pass_score): bit equal
                assert first_pass_total(h) == by_words[h["words"]].total
            totals = [first_pass_total(h) for h in nb]
            assert totals == sorted(totals, reverse=True)
            # "b b" leads once a bonus is counted: -1.0 + 1.0 > -0.5 + 0.25, -1.0 + 1.2 > -0.5 + 0.6
            assert nb[0]["words"] == ("a" if context == length == 0 else "b b")


def test_search_methods_agree(trained_tiny, asr_data):
    from asr.data import Tokenizer, load_cuts, make_dataloader

    model, _ = load_transducer(trained_tiny / "epoch-60.pt")
    tok = Tokenizer(asr_data["bpe_model"])
    batch = next(iter(make_dataloader(load_cuts(asr_data["cuts"]), tok, 8.0, shuffle=False)))
    feats, lens = batch["feats"][:3], batch["feat_lens"][:3]
    greedy = SEARCH_METHODS["greedy"]()(model, feats, lens)
    beam1 = SEARCH_METHODS["modified_beam"](beam=1)(model, feats, lens)
    for g, b in zip(greedy, beam1, strict=True):  # beam 1 == greedy (one symbol per frame)
        assert g[0].tokens == b[0].tokens
        assert abs(g[0].score - b[0].score) < 1e-3
    beam4 = SEARCH_METHODS["modified_beam"](beam=4)(model, feats, lens)
    ref = SEARCH_METHODS["torchaudio_beam"](beam=4)(model, feats, lens)
    for b, r, text in zip(beam4, ref, batch["texts"][:3], strict=True):
        assert [h.score for h in b] == sorted((h.score for h in b), reverse=True)
        # RNNTBeamSearch reads blank at index -1; without the adapter it emits token runs
        assert len(tok.decode(list(r[0].tokens)).split()) <= 2 * len(text.split())
        assert r[0].score > -50.0


def test_decode_writes_results_nbest_and_lattices(trained_tiny, asr_data, tmp_path):
    avg = average(AverageConfig(exp_dir=trained_tiny, epoch=60, avg=3, out=tmp_path / "avg.pt"))
    cfg = DecodeConfig(
        exp_dir=trained_tiny,
        checkpoint=avg,
        bpe_model=asr_data["bpe_model"],
        cuts=[asr_data["cuts"]],
        method="modified_beam",
        beam=4,
        nbest=3,
        out_dir=tmp_path / "dec",
    )
    (summary,) = run(cfg)
    name, suffix = summary["set"], summary["suffix"]
    assert summary["utterances"] == 20 and summary["oracle_wer"] <= summary["wer"]
    assert summary["wer"] <= 25.0
    out = tmp_path / "dec"
    for f in (
        f"recogs-{name}-{suffix}.txt",
        f"errs-{name}-{suffix}.txt",
        f"wer-summary-{name}-{suffix}.txt",
        f"oracle-wer-{name}-{suffix}.txt",
    ):
        assert (out / f).is_file(), f
    assert (out / f"errs-{name}-{suffix}.txt").read_text().startswith("%WER ")
    with gzip.open(out / f"nbest-{name}.jsonl.gz", "rt") as f:
        recs = [json.loads(line) for line in f]
    assert len(recs) == 20
    for r in recs:
        assert set(r) == {"id", "ref", "hyps"} and 1 <= len(r["hyps"]) <= 3
        words = [h["words"] for h in r["hyps"]]
        assert len(set(words)) == len(words)
        scores = [h["am_score"] for h in r["hyps"]]
        assert scores == sorted(scores, reverse=True)
        assert all(isinstance(t, int) for h in r["hyps"] for t in h["tokens"])
    lats = read_nbest_lattices(out / f"lattices-{name}.ark", out / f"words-{name}.txt")
    for r in recs:
        got = lats[r["id"]]
        assert [w for w, _ in got] == [h["words"] for h in r["hyps"]]
        assert all(abs(s - h["am_score"]) < 1e-3 for (_, s), h in zip(got, r["hyps"], strict=True))


def test_decode_batches_longest_first(asr_data):
    """decode-asr batches the cuts by duration, longest first: every cut once, no batch over
    the limit."""
    from asr.data import Tokenizer, load_cuts, make_decode_dataloader

    cuts = load_cuts(asr_data["cuts"])
    tok = Tokenizer(asr_data["bpe_model"])
    batches = list(make_decode_dataloader(cuts, tok, 8.0))
    durs = {c.supervisions[0].id: c.duration for c in cuts}
    order = [uid for b in batches for uid in b["ids"]]
    assert sorted(order) == sorted(durs)
    assert [durs[u] for u in order] == sorted(durs.values(), reverse=True)
    assert len(batches) > 1 and order != [c.supervisions[0].id for c in cuts]
    for b in batches:
        assert sum(durs[u] for u in b["ids"]) <= 8.0 or len(b["ids"]) == 1


def test_hypotheses_do_not_depend_on_the_batches(trained_tiny, asr_data, tmp_path):
    """The Conformer masks the padding (``--mask-padding``): one batch of all the utterances and
    batches of about one utterance decode every utterance to the same n-best."""
    import json

    def decode(out, max_duration):
        cfg = DecodeConfig(
            exp_dir=trained_tiny,
            checkpoint=trained_tiny / "epoch-60.pt",
            bpe_model=asr_data["bpe_model"],
            cuts=[asr_data["cuts"]],
            out_dir=tmp_path / out,
            method="modified_beam",
            beam=4,
            nbest=4,
            lattices=False,
            max_duration=max_duration,
        )
        (summary,) = run(cfg)
        path = tmp_path / out / f"nbest-{summary['set']}.jsonl.gz"
        return [json.loads(line) for line in gzip.open(path, "rt")]

    one, many = decode("one", 1000.0), decode("many", 2.0)
    assert [r["id"] for r in one] == [r["id"] for r in many] and len(one) == 20
    for a, b in zip(one, many, strict=True):
        assert [h["words"] for h in a["hyps"]] == [h["words"] for h in b["hyps"]], a["id"]
        for ha, hb in zip(a["hyps"], b["hyps"], strict=True):
            assert abs(ha["am_score"] - hb["am_score"]) < 1e-4, a["id"]


def test_dev_checks_do_not_depend_on_the_batches(trained_tiny, asr_data):
    """train-asr's dev checks batch by duration (make_decode_dataloader): dev loss and greedy
    WER equal those of the manifest's order, one utterance per batch or all in one."""
    import pytest

    from asr.data import Tokenizer, load_cuts, make_dataloader, make_decode_dataloader
    from asr.objective import greedy_wer, validate

    model, _ = load_transducer(trained_tiny / "epoch-60.pt")
    _, cfg = tiny_cfg(asr_data, trained_tiny)
    tok, cuts = Tokenizer(asr_data["bpe_model"]), load_cuts(asr_data["cuts"])
    loaders = [
        make_decode_dataloader(cuts, tok, 1000.0),
        make_decode_dataloader(cuts, tok, 2.0),
        make_dataloader(cuts, tok, 5.0, shuffle=False),
    ]
    assert len(list(loaders[1])) > len(list(loaders[2])) > len(list(loaders[0])) == 1
    losses = [validate(model, dl, cfg, "cpu") for dl in loaders]
    wers = [greedy_wer(model, dl, tok, "cpu") for dl in loaders]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4) and losses[2] == pytest.approx(
        losses[0], rel=1e-4
    )
    assert wers[0] == wers[1] == wers[2]


def _beam_cfg(trained_tiny, asr_data, beam: int):
    """DecodeConfig(**overrides) for modified_beam with ``beam`` (= n-best) on 6 utterances."""

    def cfg(**kw):
        base = dict(
            exp_dir=trained_tiny,
            checkpoint=trained_tiny / "epoch-60.pt",
            bpe_model=asr_data["bpe_model"],
            cuts=[asr_data["cuts"]],
            method="modified_beam",
            beam=beam,
            nbest=beam,
            max_utts=6,
            lattices=False,
        )
        return DecodeConfig(**{**base, **kw})

    return cfg


def test_length_bonus_decodes_into_its_own_suffix(trained_tiny, asr_data, tmp_path):
    import pytest

    from common.io import InputError

    cfg = _beam_cfg(trained_tiny, asr_data, beam=4)

    (plain,) = run(cfg(out_dir=tmp_path / "plain"))
    (zero,) = run(cfg(out_dir=tmp_path / "zero", length_bonus=0.0))
    (long,) = run(cfg(out_dir=tmp_path / "long", length_bonus=2.0, lattices=True))
    assert plain["suffix"] == zero["suffix"] == "modified_beam_beam4"
    assert long["suffix"] == "modified_beam_beam4_lb2"
    read = lambda d: gzip.open(tmp_path / d / f"nbest-{plain['set']}.jsonl.gz", "rt").read()  # noqa: E731
    assert read("plain") == read("zero")
    assert "length_score" not in read("plain")
    for line in read("long").splitlines():  # ranked by am_score + length_score, 2 per token
        hyps = json.loads(line)["hyps"]
        assert [h["length_score"] for h in hyps] == [2.0 * len(h["tokens"]) for h in hyps]
        totals = [h["am_score"] + h["length_score"] for h in hyps]
        assert totals == sorted(totals, reverse=True)
    # the lattices hold the same ranking: a path's score is am_score + length_score
    name = long["set"]
    lats = read_nbest_lattices(
        tmp_path / "long" / f"lattices-{name}.ark", tmp_path / "long" / f"words-{name}.txt"
    )
    for line in read("long").splitlines():
        rec = json.loads(line)
        got = lats[rec["id"]]
        assert [w for w, _ in got] == [h["words"] for h in rec["hyps"]]
        for (_, score), h in zip(got, rec["hyps"], strict=True):
            assert abs(score - (h["am_score"] + h["length_score"])) < 1e-3
    for bad in (dict(method="greedy", length_bonus=1.0), dict(length_bonus=float("nan"))):
        with pytest.raises(InputError, match="--length-bonus"):
            cfg(**bad).validate()


def test_score_beam_decodes_into_its_own_suffix_and_prunes(trained_tiny, asr_data, tmp_path):
    import pytest

    from common.io import InputError

    cfg = _beam_cfg(trained_tiny, asr_data, beam=8)

    (plain,) = run(cfg(out_dir=tmp_path / "plain"))
    (wide,) = run(cfg(out_dir=tmp_path / "wide", score_beam=1e9))
    (narrow,) = run(cfg(out_dir=tmp_path / "narrow", score_beam=0.5))
    assert plain["suffix"] == "modified_beam_beam8"
    assert narrow["suffix"] == "modified_beam_beam8_sb0.5"
    read = lambda d: [  # noqa: E731
        json.loads(line)["hyps"]
        for line in gzip.open(tmp_path / d / f"nbest-{plain['set']}.jsonl.gz", "rt")
    ]
    assert read("plain") == read("wide")  # a score beam nothing falls out of changes nothing
    # 0.5 nats: fewer hypotheses survive (not every final one is within 0.5 of the best: merging
    # paths later adds to a hypothesis's score)
    assert sum(map(len, read("narrow"))) < sum(map(len, read("plain")))
    for bad in (
        dict(score_beam=0.0),
        dict(score_beam=float("nan")),
        dict(method="greedy", score_beam=4.0),
    ):
        with pytest.raises(InputError, match="--score-beam"):
            cfg(**bad).validate()


def test_merge_same_text_decode_and_pieces(trained_tiny, asr_data, tok, tmp_path):
    """``--merge-same-text``: the pieces spell what ``decode`` gives; the decode runs, names
    its outputs ``_mt`` and writes distinct word sequences; other methods refuse it."""
    import pytest

    from common.io import InputError

    pieces = tok.text_pieces()
    ids = tok.encode("play the music")
    assert len(pieces) == tok.vocab_size and pieces[0] == ""
    assert "".join(pieces[i] for i in ids).replace("▁", " ").strip() == tok.decode(ids)
    cfg = _beam_cfg(trained_tiny, asr_data, beam=4)
    (summary,) = run(cfg(merge_same_text=True, out_dir=tmp_path / "dec"))
    assert summary["suffix"].endswith("_mt") and summary["utterances"] == 6
    assert summary["oracle_wer"] <= summary["wer"]
    with gzip.open(tmp_path / "dec" / f"nbest-{summary['set']}.jsonl.gz", "rt") as f:
        for rec in map(json.loads, f):
            words = [h["words"] for h in rec["hyps"]]
            assert 1 <= len(words) == len(set(words)) <= 4
    with pytest.raises(InputError, match="--merge-same-text: search method 'greedy'"):
        cfg(method="greedy", merge_same_text=True).validate()


def test_average_leaves_out_a_short_partial_newest_epoch(trained_tiny, tmp_path, caplog):
    """``--epoch 0``: a newest epoch a budget stopped before half of it (the recipe's 7,000-step
    cap: 13 of 332 steps) is left out, else the newest is the last averaged."""
    import logging

    from common.checkpoint import load_checkpoint

    src = load_checkpoint(trained_tiny / "epoch-60.pt")
    exp = tmp_path / "exp"
    exp.mkdir()

    def put(n: int, step: int, partial: bool) -> None:
        torch.save({**src, "epoch": n, "step": step, "partial": partial}, exp / f"epoch-{n}.pt")

    def averaged() -> list[str]:
        out = average(AverageConfig(exp_dir=exp, avg=3, out=tmp_path / "avg.pt"))
        return [Path(p).name for p in load_checkpoint(out)["averaged_from"]]

    for n in range(1, 5):
        put(n, 100 * n, False)
    put(5, 413, True)  # 13 of about 100 steps
    with caplog.at_level(logging.INFO):
        assert averaged() == ["epoch-2.pt", "epoch-3.pt", "epoch-4.pt"]
    assert "epoch-5.pt is a partial epoch (13 of about 100 steps): averaging up to epoch 4" in (
        caplog.text
    )
    put(5, 450, True)  # half an epoch: averaged
    assert averaged() == ["epoch-3.pt", "epoch-4.pt", "epoch-5.pt"]
    put(5, 413, False)  # a complete epoch, however short
    assert averaged() == ["epoch-3.pt", "epoch-4.pt", "epoch-5.pt"]
    put(5, 413, True)
    assert average(  # an explicit --epoch is taken as given
        AverageConfig(exp_dir=exp, epoch=5, avg=3, out=tmp_path / "e5.pt")
    ).is_file()
    assert [Path(p).name for p in load_checkpoint(tmp_path / "e5.pt")["averaged_from"]] == [
        "epoch-3.pt",
        "epoch-4.pt",
        "epoch-5.pt",
    ]


def test_average_keeps_a_short_partial_newest_epoch_that_ends_a_cooldown(trained_tiny, tmp_path):
    """With ``train-asr --lr-cooldown-steps`` the budget's last steps anneal the LR to 0: the
    short partial newest epoch that ends at ``--max-steps`` is the most annealed model, so
    ``--epoch 0`` keeps it; one that ``--max-minutes`` stopped during the cool-down follows the
    half-epoch rule."""
    import copy

    from common.checkpoint import load_checkpoint

    src = load_checkpoint(trained_tiny / "epoch-60.pt")
    exp = tmp_path / "exp"
    exp.mkdir()

    def averaged(max_steps: int) -> list[str]:
        for n in range(1, 6):
            ckpt = {**copy.deepcopy(src), "epoch": n, "step": 100 * n if n < 5 else 413}
            ckpt["partial"] = n == 5  # 13 of about 100 steps
            ckpt["config"]["train"].update(lr_cooldown_steps=150, max_steps=max_steps)
            torch.save(ckpt, exp / f"epoch-{n}.pt")
        out = average(AverageConfig(exp_dir=exp, avg=1, out=tmp_path / "avg.pt"))
        return [Path(p).name for p in load_checkpoint(out)["averaged_from"]]

    assert averaged(max_steps=413) == ["epoch-5.pt"]  # the cool-down ended: LR 0
    assert averaged(max_steps=500) == ["epoch-4.pt"]  # stopped at 413 of the cool-down's 350-500
