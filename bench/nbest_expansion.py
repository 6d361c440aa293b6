"""Benchmark: can the slot lexicons put the missing rare words into an n-best list, and does
the RNN-T let them win?

Every span of 1..``--max-span`` words of each utterance's first ``--from-hyps`` hypotheses is
matched against the phrases of the utterance's slot lexicon lists (``decode-asr
--context-lists`` semantics: the lists the map names, else ``global``) by character
similarity (rapidfuzz ``fuzz.ratio``, 0-100); the ``--top-k`` phrases at or above
``--min-similarity`` each replace the span, giving a new candidate sentence. Then every
hypothesis, old and new, is scored exactly by the model: the RNN-T's log-likelihood summed over
all alignments (``asr.loss.rnnt_loss_torch``), plus ``--lm-scale`` x the fusion LM's
log-probability minus ``--ilm-scale`` x the internal-LM estimate (the joiner on a zero encoder
frame, blank left out; both as ``asr.fusion.ShallowFusion`` scores them token by token) plus
``--length-bonus`` per BPE token: the fused search's score without its pruning.

Reported (``--word-counts``: rare = fewer than ``--rare-threshold`` training occurrences, as
``score-wer``): WER and rare-word WER of the first-pass 1-best, of the n-best and the expanded
list re-ranked by that exact score, and of their oracles; the share of rare reference tokens
found anywhere in each list; and, for the expansions that have fewer errors than the n-best's
best-scored hypothesis ("good") and the rest ("bad"), how far their score is below that
hypothesis' (quantiles, and how many are within 2/4/6/8 nats). Only the n-best lists, the
model and the lexicons are used, never the references, except to count errors.

Run from the recipe folder (cut manifests hold relative feature paths).

Usage:
    python bench/nbest_expansion.py --checkpoint exp/asr/conformer_rnnt/avg.pt \
        --bpe-model data/lang_bpe_128/bpe.model --cuts data/fbank/snips_cuts_dev.jsonl.gz \
        --nbest exp/asr/conformer_rnnt/decode_fused/nbest-dev.jsonl.gz \
        --lexicon data/lang/lexicons --context-lists exp/context/predicted.tsv \
        --fusion-lm exp/asr/token_lm/best.pt --lm-scale 0.2 --ilm-scale 0.1 --length-bonus 0.5 \
        --word-counts data/lang/word_counts.txt --out exp/asr/bench_nbest_expansion.json
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from _common import write_report
from rapidfuzz import fuzz, process
from tqdm import tqdm

from asr.context_graph import GLOBAL_LIST, lexicon_files, read_lexicon
from asr.data import Tokenizer, load_cuts, make_decode_dataloader
from asr.decode import load_transducer
from asr.fusion import load_token_lm
from asr.loss import rnnt_loss_torch
from common.io import InputError
from common.lexicon import read_context_map
from common.wer import is_rare, num_errors, read_word_counts
from rescoring.metrics import corpus_metrics, utt_counts
from rescoring.nbest import read_nbest_jsonl

DEFICITS = (2.0, 4.0, 6.0, 8.0)


def expand(
    hyps: list[str],
    phrases: list[str],
    from_hyps: int,
    max_span: int,
    top_k: int,
    min_similarity: float,
) -> dict[str, str]:
    """Sentence -> where it came from (``nbest<K>``, or ``exp:<span>-><phrase>``), the n-best
    first in its order; each new sentence once (its first derivation)."""
    out: dict[str, str] = {}
    for k, h in enumerate(hyps):
        out.setdefault(h, f"nbest{k}")
    for h in hyps[:from_hyps]:
        ws = h.split()
        for i in range(len(ws)):
            for n in range(1, min(max_span, len(ws) - i) + 1):
                span = " ".join(ws[i : i + n])
                matches = process.extract(
                    span, phrases, scorer=fuzz.ratio, limit=top_k, score_cutoff=min_similarity
                )
                for phrase, _, _ in matches:
                    out.setdefault(
                        " ".join([*ws[:i], phrase, *ws[i + n :]]), f"exp:{span}->{phrase}"
                    )
    return out


@torch.no_grad()
def exact_scores(model, lm, tok: Tokenizer, enc: torch.Tensor, texts: list[str]) -> dict:
    """Per text: ``am`` (RNN-T log-likelihood over all alignments of ``enc`` (1, T, D)),
    ``lm`` / ``ilm`` (summed token log-probs; 0 without ``lm``), ``ntok``. An empty text
    scores the all-blank paths, with ``lm`` = ``ilm`` = 0."""
    ids = [tok.encode(t) for t in texts]
    # an empty hypothesis (all blanks) is scored too: one padding column keeps the shapes
    k, u = len(ids), max(1, *map(len, ids))
    tg = torch.zeros(k, u, dtype=torch.long)
    for j, x in enumerate(ids):
        tg[j, : len(x)] = torch.tensor(x)
    tl = torch.tensor([len(x) for x in ids])
    pred, pred_lens, _ = model.predict(
        torch.cat([torch.zeros(k, 1, dtype=torch.long), tg], 1), tl + 1, None
    )
    encs = enc.expand(k, -1, -1)
    enc_lens = torch.full((k,), enc.shape[1])
    logits, _, _ = model.join(encs, enc_lens, pred, pred_lens)
    am = -rnnt_loss_torch(logits, tg, enc_lens, tl)
    mask = torch.arange(u)[None] < tl[:, None]
    ilm = lmp = torch.zeros(k)
    if lm is not None:
        z, _, _ = model.join(
            torch.zeros_like(encs[:, :1]), torch.ones(k, dtype=torch.long), pred, pred_lens
        )
        ilm_lp = z[:, 0, :u, 1:].log_softmax(-1)  # blank left out, as ShallowFusion
        ilm = (ilm_lp.gather(2, (tg - 1).clamp(min=0)[..., None])[..., 0] * mask).sum(1)
        sos = torch.ones(k, 1, dtype=torch.long)
        lm_lp = lm(torch.cat([sos, tg], 1)[:, :u]).log_softmax(-1)
        lmp = (lm_lp.gather(2, tg[..., None])[..., 0] * mask).sum(1)
    return {"am": am.tolist(), "lm": lmp.tolist(), "ilm": ilm.tolist(), "ntok": tl.tolist()}


def _metrics(pairs, counts, threshold) -> dict:
    m = corpus_metrics([utt_counts(r, h, counts, threshold) for r, h in pairs])
    return {k: round(m[k], 2) for k in ("wer", "rare_wer", "common_wer") if m[k] is not None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--bpe-model", type=Path, required=True)
    p.add_argument("--cuts", type=Path, required=True)
    p.add_argument("--nbest", type=Path, required=True, help="decode-asr's nbest-<set>.jsonl.gz")
    p.add_argument("--lexicon", type=Path, required=True, help="a phrase list or a folder of them")
    p.add_argument("--context-lists", type=Path, help="utt_id<TAB>list[,list...] (else global)")
    p.add_argument("--fusion-lm", type=Path, help="train-token-lm checkpoint")
    p.add_argument("--lm-scale", type=float, default=0.0)
    p.add_argument("--ilm-scale", type=float, default=0.0)
    p.add_argument("--length-bonus", type=float, default=0.0, help="per BPE token")
    p.add_argument("--from-hyps", type=int, default=1, help="hypotheses whose spans are matched")
    p.add_argument("--max-span", type=int, default=4, help="longest span, in words")
    p.add_argument("--top-k", type=int, default=3, help="phrases per span")
    p.add_argument("--min-similarity", type=float, default=60.0, help="rapidfuzz ratio, 0-100")
    p.add_argument("--word-counts", type=Path, required=True, help="word<SPACE>count (rare words)")
    p.add_argument("--rare-threshold", type=int, default=5)
    p.add_argument("--max-utts", type=int, default=0, help="0 = all")
    p.add_argument("--chunk", type=int, default=48, help="hypotheses scored at once")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if not 0.0 <= args.min_similarity <= 100.0:
        p.error(f"--min-similarity must be in [0, 100], got {args.min_similarity}")
    if min(args.from_hyps, args.max_span, args.top_k, args.chunk) < 1:
        p.error("--from-hyps, --max-span, --top-k and --chunk must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(1)

    model, _ = load_transducer(args.checkpoint)
    tok = Tokenizer(args.bpe_model)
    lm = None
    if args.fusion_lm is not None:
        lm = load_token_lm(args.fusion_lm, tok.sp_pieces())
    files = lexicon_files(args.lexicon)
    lists = {name: [ph for ph, _ in read_lexicon(path)] for name, path in files.items()}
    nbest = {r.id: r for r in read_nbest_jsonl(args.nbest)}  # validated, as rescore-nbest
    cuts = load_cuts(args.cuts)
    if args.max_utts:
        cuts = cuts.subset(first=min(args.max_utts, len(cuts)))
    ids = [c.supervisions[0].id if c.supervisions else c.id for c in cuts]
    missing = [u for u in ids if u not in nbest]
    if missing:
        raise InputError(
            f"{args.nbest}: no n-best record for {len(missing)} utterance(s), e.g. {missing[0]!r}"
        )
    utt_lists = (
        {} if args.context_lists is None else read_context_map(args.context_lists, lists, None)
    )
    counts = read_word_counts(args.word_counts) if args.word_counts else {}

    def total(s: dict, j: int) -> float:
        return (
            s["am"][j]
            + args.lm_scale * s["lm"][j]
            - args.ilm_scale * s["ilm"][j]
            + args.length_bonus * s["ntok"][j]
        )

    first, nb_best, ex_best, nb_orc, ex_orc = [], [], [], [], []
    good, bad = [], []
    rare_tokens = rare_in_nbest = rare_in_expanded = 0
    n_cands = n_exp = 0
    dl = make_decode_dataloader(cuts, tok, 60.0)
    for batch in tqdm(dl, desc="utterance batches", unit="batch"):
        enc, enc_lens = model.transcribe(batch["feats"], batch["feat_lens"])
        for j, uid in enumerate(batch["ids"]):
            rec = nbest[uid]
            ref = rec.ref.split()
            hyps = [h.words for h in rec.hyps]
            names = utt_lists.get(uid, (GLOBAL_LIST,) if GLOBAL_LIST in lists else ())
            phrases = [ph for name in names for ph in lists[name]]
            cands = expand(
                hyps, phrases, args.from_hyps, args.max_span, args.top_k, args.min_similarity
            )
            texts, origins = list(cands), list(cands.values())
            e = enc[j : j + 1, : int(enc_lens[j])]
            s: dict[str, list] = {"am": [], "lm": [], "ilm": [], "ntok": []}
            for c in range(0, len(texts), args.chunk):
                part = exact_scores(model, lm, tok, e, texts[c : c + args.chunk])
                for key in s:
                    s[key] += part[key]
            tot = [total(s, k) for k in range(len(texts))]
            errs = [num_errors(ref, t.split()) for t in texts]
            is_nb = [o.startswith("nbest") for o in origins]
            top_nb = max((k for k in range(len(texts)) if is_nb[k]), key=lambda k: tot[k])
            top_all = max(range(len(texts)), key=lambda k: tot[k])
            orc_nb = min((k for k in range(len(texts)) if is_nb[k]), key=lambda k: errs[k])
            orc_all = min(range(len(texts)), key=lambda k: errs[k])
            for dst, k in (
                (nb_best, top_nb),
                (ex_best, top_all),
                (nb_orc, orc_nb),
                (ex_orc, orc_all),
            ):
                dst.append((ref, texts[k].split()))
            first.append((ref, hyps[0].split()))
            for k in range(len(texts)):
                if not is_nb[k]:
                    (good if errs[k] < errs[top_nb] else bad).append(tot[top_nb] - tot[k])
            n_cands += len(texts)
            n_exp += len(texts) - sum(is_nb)
            rare = [w for w in ref if is_rare(w, counts, args.rare_threshold)] if counts else []
            bag_nb = {w for k in range(len(texts)) if is_nb[k] for w in texts[k].split()}
            bag_all = {w for t in texts for w in t.split()}
            rare_tokens += len(rare)
            rare_in_nbest += sum(w in bag_nb for w in rare)
            rare_in_expanded += sum(w in bag_all for w in rare)

    thr = args.rare_threshold

    def deficits(v: list[float]) -> dict:
        a = np.asarray(v)
        if not len(a):
            return {"count": 0}
        q = {
            f"q{int(x * 100)}": round(float(np.quantile(a, x)), 2)
            for x in (0.1, 0.25, 0.5, 0.75, 0.9)
        }
        return {
            "count": len(a),
            **q,
            **{f"within_{d:g}_nats": int((a <= d).sum()) for d in DEFICITS},
        }

    report = {
        "utterances": len(first),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "candidates_per_utt": round(n_cands / len(first), 2),
        "expansions_per_utt": round(n_exp / len(first), 2),
        "first_pass_1best": _metrics(first, counts, thr),
        "nbest_exact_rerank": _metrics(nb_best, counts, thr),
        "expanded_exact_rerank": _metrics(ex_best, counts, thr),
        "nbest_oracle": _metrics(nb_orc, counts, thr),
        "expanded_oracle": _metrics(ex_orc, counts, thr),
        "rare_tokens": rare_tokens,
        "rare_token_recall_nbest": round(rare_in_nbest / max(rare_tokens, 1), 4),
        "rare_token_recall_expanded": round(rare_in_expanded / max(rare_tokens, 1), 4),
        "score_deficit_good_expansions": deficits(good),
        "score_deficit_bad_expansions": deficits(bad),
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
