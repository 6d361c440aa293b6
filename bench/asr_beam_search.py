"""Benchmark: batched modified beam search vs torchaudio's RNNTBeamSearch (the reference).

Same model, same utterances: 1-best WER, n-best oracle WER, decoding seconds (encoder
included), and each method's speed ratio to ``torchaudio_beam`` (its seconds / the method's).
``search_seconds`` and ``search_speed_vs_torchaudio`` leave out the encoder: the batched
searches are timed alone on the encoder output (``search_encoded``); RNNTBeamSearch runs its
own encoder one utterance at a time, so its search seconds are its seconds minus that encoder's,
timed apart. With ``--repeats N`` every method is timed N times (round-robin, so a slow phase of
the machine hits every method) and each time is the fastest of the N; the WERs come from the
first round (every method is deterministic). RNNTBeamSearch has no bound on symbols per frame
and decodes one utterance at a time, hence the small default utterance count.

A method is ``name`` or ``name:option=value,...`` (options of its constructor, e.g.
``modified_beam:max_sym_per_frame=2,beam=16,length_bonus=0.5``); ``--beam``,
``--max-sym-per-frame``, ``--length-bonus`` and ``--score-beam`` are the defaults each method
takes if its constructor has them. One option belongs to the bench, not to a constructor:
``max_duration=S`` decodes that method's batches with S seconds of audio each instead of
``--max-duration`` (so batch sizes compare in one run, round-robin: ``modified_beam
modified_beam:max_duration=300``). ``merge_same_text=1`` gives the search the BPE model's
pieces (``decode-asr --merge-same-text``: hypotheses spelling the same text are merged).
With ``--context-lexicon`` (a phrase
list, ``phrase[<TAB>count]`` per line) every context-capable method is run a second time biased
with it (``--context-score`` per token) and ``biasing_time_ratio`` = biased / unbiased seconds.

The batches are those ``decode-asr`` decodes: the utterances sorted by duration, longest first
(``--batch-order manifest``: in the manifest's order, which pads every batch to a long
utterance; RNNTBeamSearch, one utterance at a time, does not depend on it).

Run from the recipe folder (cut manifests hold relative feature paths).

Usage:
    python bench/asr_beam_search.py --checkpoint exp/asr/conformer_rnnt/avg.pt \
        --bpe-model data/lang_bpe_128/bpe.model --cuts data/fbank/snips_cuts_dev.jsonl.gz \
        --num-utts 200 --beam 8 --max-sym-per-frame 2 --repeats 3 \
        --methods torchaudio_beam modified_beam modified_beam:beam=16 \
        --out exp/asr/bench_beam_search.json
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from _common import write_report

from asr.context_graph import ContextBiasing
from asr.data import Tokenizer, load_cuts, make_dataloader, make_decode_dataloader
from asr.decode import load_transducer, to_nbest
from asr.search import SEARCH_METHODS, _options, build_search
from common.wer import compute_wer, oracle_wer

REFERENCE = "torchaudio_beam"


#: a method spec's option that sets the bench's batches, not the search's constructor
BATCH_OPTION = "max_duration"
#: a method spec's option that becomes ``merge_pieces`` (the BPE model's pieces)
MERGE_OPTION = "merge_same_text"


def parse_method(spec: str, defaults: dict[str, object]) -> tuple[str, dict[str, object]]:
    """``name[:k=v,...]`` -> (name, options): ``defaults`` the constructor takes, overridden by
    the spec's (ints, floats or strings); ``max_duration`` (:data:`BATCH_OPTION`) is kept too."""
    name, _, rest = spec.partition(":")
    if name not in SEARCH_METHODS:
        raise SystemExit(f"unknown method {name!r}; choose from {sorted(SEARCH_METHODS)}")
    takes = _options(SEARCH_METHODS[name]) | {BATCH_OPTION}
    opts = {k: v for k, v in defaults.items() if k in takes}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        for conv in (int, float, str):
            try:
                opts[key] = conv(value)
                break
            except ValueError:
                continue
    return name, opts


def run_method(search, model, batches, tok, nbest_n, graphs=None) -> dict:
    """Decode ``batches``: WER, oracle WER, ``seconds`` (encoder included) and, for a search
    with ``search_encoded`` (the batched ones), ``search_seconds`` (the search alone)."""
    refs, nbest, results = {}, {}, []
    total = search_s = encode_s = 0.0
    split = hasattr(search, "search_encoded")
    for b in batches:
        kw = {} if graphs is None else {"contexts": [graphs] * len(b["ids"])}
        t0 = time.perf_counter()
        if split:
            with torch.no_grad():  # as the searches' own __call__
                enc, enc_lens = model.transcribe(b["feats"], b["feat_lens"])
            t1 = time.perf_counter()
            encode_s += t1 - t0
            out = search.search_encoded(model, enc, enc_lens, **kw)
            search_s += time.perf_counter() - t1
        else:
            out = search(model, b["feats"], b["feat_lens"], **kw)
        total += time.perf_counter() - t0
        for uid, ref, hyps in zip(b["ids"], b["texts"], out, strict=True):
            nb = to_nbest(hyps, tok, nbest_n, context=graphs is not None)
            refs[uid] = ref.split()
            nbest[uid] = [h["words"].split() for h in nb]
            results.append((uid, ref.split(), nbest[uid][0] if nbest[uid] else []))
    stats, oracle = compute_wer(results), oracle_wer(refs, nbest)
    res = {
        "wer": round(stats.wer, 2),
        "oracle_wer": round(oracle.wer, 2),
        "seconds": total,
        "errors": stats.kaldi_line(),
        "oracle_errors": oracle.kaldi_line(),
    }
    if split:
        res["search_seconds"] = search_s
        res["encoder_seconds"] = encode_s
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--bpe-model", type=Path, required=True)
    p.add_argument("--cuts", type=Path, required=True)
    p.add_argument("--num-utts", type=int, default=30)
    p.add_argument("--beam", type=int, default=8)
    p.add_argument("--max-sym-per-frame", type=int, default=1, help="methods that take it")
    p.add_argument("--nbest", type=int, default=8)
    p.add_argument("--max-duration", type=float, default=120.0, help="seconds of audio per batch")
    p.add_argument(
        "--batch-order",
        choices=["duration", "manifest"],
        default="duration",
        help="duration: longest first, the batches decode-asr uses "
        "(asr.data.make_decode_dataloader); manifest: the manifest's order",
    )
    p.add_argument(
        "--length-bonus", type=float, default=0.0, help="methods that take it (modified_beam)"
    )
    p.add_argument(
        "--score-beam", type=float, default=math.inf, help="methods that take it (modified_beam)"
    )
    p.add_argument("--step-max-tokens", type=int, default=10, help="RNNTBeamSearch per-frame cap")
    p.add_argument("--methods", nargs="+", default=["greedy", "modified_beam", REFERENCE])
    p.add_argument("--context-lexicon", type=Path, default=None, help="biasing phrase list")
    p.add_argument("--context-score", type=float, default=0.5, help="bonus per matched token")
    p.add_argument(
        "--repeats", type=int, default=1, help="time every method N times, keep the fastest"
    )
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    torch.set_num_threads(1)
    model, _ = load_transducer(args.checkpoint)
    tok = Tokenizer(args.bpe_model)
    cuts = load_cuts(args.cuts).subset(first=args.num_utts)
    audio_s = sum(c.duration for c in cuts)
    waveform = model.cfg.waveform_input
    batch_sets: dict[float, list] = {}

    def batches_of(max_duration: float) -> list:
        if max_duration not in batch_sets:
            if args.batch_order == "duration":
                dl = make_decode_dataloader(cuts, tok, max_duration, waveform=waveform)
            else:
                dl = make_dataloader(cuts, tok, max_duration, shuffle=False, waveform=waveform)
            batch_sets[max_duration] = list(dl)
        return batch_sets[max_duration]

    batches = batches_of(args.max_duration)
    graph = None
    if args.context_lexicon is not None:
        biasing = ContextBiasing.load(args.context_lexicon, tok, args.context_score)
        graph = biasing.build_graph(sorted(biasing.lists))
    defaults = {
        "beam": args.beam,
        "max_sym_per_frame": args.max_sym_per_frame,
        "step_max_tokens": args.step_max_tokens,
        "length_bonus": args.length_bonus,
        "score_beam": args.score_beam,
    }
    report: dict = {
        "checkpoint": str(args.checkpoint),
        "utterances": len(cuts),
        "audio_s": round(audio_s, 2),
        "batches": len(batches),
        "batch_order": args.batch_order,
        "beam": args.beam,
        "max_sym_per_frame": args.max_sym_per_frame,
        "nbest": args.nbest,
        "torch_threads": torch.get_num_threads(),
        "methods": {},
    }
    if graph is not None:
        report["context"] = {
            "lexicon": str(args.context_lexicon),
            "score": args.context_score,
            "phrases": graph.num_phrases,
            "nodes": graph.num_nodes,
        }
    runs = []  # (spec, biased, options, search, its batches)
    for spec in args.methods:
        name, opts = parse_method(spec, defaults)
        own = float(opts.get(BATCH_OPTION, args.max_duration))
        if own <= 0:
            p.error(f"{spec}: {BATCH_OPTION} must be > 0")
        kw = {k: v for k, v in opts.items() if k not in (BATCH_OPTION, MERGE_OPTION)}
        if opts.get(MERGE_OPTION):
            kw["merge_pieces"] = tok.text_pieces()
        search = build_search(name, **kw)
        runs.append((spec, False, opts, search, batches_of(own)))
        if graph is not None and search.supports_context:
            runs.append((spec, True, opts, search, batches_of(own)))
    enc_single = math.inf
    found: dict[tuple[str, bool], dict] = {}
    for rnd in range(args.repeats):
        # the encoder alone, one utterance at a time (RNNTBeamSearch's share of its seconds;
        # the batched searches time their batched encoder calls themselves)
        with torch.no_grad():
            t0 = time.perf_counter()
            for b in batches:
                for i in range(len(b["ids"])):
                    n = int(b["feat_lens"][i])
                    model.transcribe(b["feats"][i : i + 1, :n], b["feat_lens"][i : i + 1])
            enc_single = min(enc_single, time.perf_counter() - t0)
        for spec, biased, _, search, own_batches in runs:
            res = run_method(search, model, own_batches, tok, args.nbest, graph if biased else None)
            first = found.setdefault((spec, biased), res)
            for key in ("seconds", "search_seconds", "encoder_seconds"):
                if key in res:
                    first[key] = min(first[key], res[key])
            print(f"round {rnd + 1}/{args.repeats}", spec, "biased" * biased, res, flush=True)
    batched = [r["encoder_seconds"] for r in found.values() if "encoder_seconds" in r]
    report["encoder_seconds"] = {
        "batched": round(min(batched), 2) if batched else None,
        "per_utt": round(enc_single, 2),
    }
    for spec, biased, opts, _, own_batches in runs:
        res = found[(spec, biased)]
        res["batches"] = len(own_batches)
        if "search_seconds" not in res:  # RNNTBeamSearch: its seconds minus its encoder's
            res["search_seconds"] = max(res["seconds"] - enc_single, 0.0)
        res["rtf"] = round(res["seconds"] / audio_s, 4)
        if biased:
            plain = report["methods"][spec]
            plain["biased"] = res
            plain["biasing_time_ratio"] = round(res["seconds"] / max(plain["seconds"], 1e-9), 3)
        else:
            report["methods"][spec] = {"options": opts, **res}
    ref = report["methods"].get(REFERENCE)
    if ref is not None:
        for res in report["methods"].values():
            res["speed_vs_torchaudio"] = round(ref["seconds"] / max(res["seconds"], 1e-9), 2)
            res["search_speed_vs_torchaudio"] = round(
                ref["search_seconds"] / max(res["search_seconds"], 1e-9), 2
            )
            res["wer_minus_torchaudio"] = round(res["wer"] - ref["wer"], 2)
            res["oracle_minus_torchaudio"] = round(res["oracle_wer"] - ref["oracle_wer"], 2)
    for res in report["methods"].values():
        for r in (res, res.get("biased", {})):
            for key in ("seconds", "search_seconds", "encoder_seconds"):
                if key in r:
                    r[key] = round(r[key], 2)
    write_report(report, args.out)


if __name__ == "__main__":
    main()
