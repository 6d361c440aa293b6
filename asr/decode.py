"""Decode Lhotse cuts with a trained RNN-T: 1-best results and n-best lists (JSONL + lattices).

Usage:
    decode-asr --exp-dir exp/asr/conformer_rnnt --checkpoint exp/asr/conformer_rnnt/epoch-14-avg-4.pt \
        --cuts data/fbank/snips_cuts_dev.jsonl.gz data/fbank/snips_cuts_test.jsonl.gz \
        --method modified_beam --beam 8 --nbest 8

Writes into ``--out-dir`` (default ``exp-dir/<method>[-beam<B>]``), per set (``dev`` from
``snips_cuts_dev.jsonl.gz``) and suffix (``<method>[_beam<B>]``):
``nbest-{set}.jsonl.gz`` (docs/INTERFACES.md records: best first, identical word sequences
merged by log-sum-exp of am_score), ``lattices-{set}.ark`` + ``words-{set}.txt`` (see
:mod:`common.lattice`; a path's score is the hypothesis' first-pass score, ``am_score`` plus
its ``length_score`` and ``context_score``, so a lattice ranks as the JSONL does),
``recogs-``/``errs-``/``wer-summary-{set}-{suffix}.txt`` of the 1-best,
``oracle-wer-{set}-{suffix}.txt`` and ``decode-summary-{set}-{suffix}.json`` (WER, oracle WER,
decode seconds, audio seconds, RTF). The log carries a Kaldi ``%WER`` line per set. The cuts
are decoded in batches sorted by duration, longest first (:func:`asr.data.make_decode_dataloader`).

Every input is checked before the first set is decoded: a missing, corrupt or non-RNN-T
checkpoint (e.g. a ``train-lm`` one), a missing or non-sentencepiece BPE model of another size
than the model's output, a missing, empty (0 cuts) or non-CutSet manifest, features of another
dimension than the model's, two manifests with the same set name, or an unwritable output folder
stop with one line ``decode-asr: error: ...`` naming the file, exit status 2. The output folder
is locked while decoding (``.lock``): a second ``decode-asr`` into it stops at once.

Contextual biasing (``--method modified_beam`` only; :mod:`asr.context_graph`):
``--context-lexicon`` is one phrase list (``phrase[<TAB>count]`` per line, e.g. from
``extract-slot-lexicon``) or a folder of ``<list>.txt`` lists; ``--context-score`` is the bonus
per matched BPE token (icefall's context score; natural-log units); ``--context-lists`` maps
utterances to lists (``utt_id<TAB>list[,list...]``; absent utterances get the ``global`` list if
there is one, else no biasing; an empty list field: no biasing). Without it every utterance is
biased with every list. Bad lexicons or maps (an empty line, a phrase that tokenises to nothing or
to ``<unk>``, more than ``--context-max-phrases`` phrases in a file, an unknown list or an
utterance that is in none of the ``--cuts``) stop the run before decoding, naming file:line.
Biased n-best hypotheses carry ``context_score`` (the bonus) beside the unbiased ``am_score`` and
are ranked by their sum; the suffix gains ``_ctx<score>``. A context score of 0 decodes exactly
as without biasing.

``--length-bonus B`` (``modified_beam``): every BPE token of a hypothesis adds ``B`` to the score
the beam is pruned on, so that longer hypotheses survive pruning (the RNN-T under-generates).
The n-best is ranked by that same score: each hypothesis carries ``length_score`` (``B`` x its
tokens) beside the model's ``am_score``, as a biased one carries ``context_score``. The suffix
gains ``_lb<B>``; 0 decodes exactly as without it.

``--score-beam S`` (``modified_beam``): besides the ``--beam`` best, a hypothesis must score
within ``S`` nats of its utterance's best at that step (the score the beam is pruned on), so
unlikely hypotheses stop costing joiner and predictor rows; a wider ``--beam`` then costs little
(asr/README.md, "Score beam"). The suffix gains ``_sb<S>``; inf (the default) is off.

LM shallow fusion (``modified_beam``; :mod:`asr.fusion`): ``--fusion-lm`` is a token LM over
the ASR's BPE ids (``train-token-lm``; trained with another BPE model: an error naming it);
every BPE token adds ``--lm-scale`` x its LM log-probability, minus ``--ilm-scale`` x the
RNN-T's internal-LM log-probability, to the score the beam is pruned and the n-best ranked on.
Each hypothesis carries the sum as ``fusion_score`` beside the model's ``am_score``; the suffix
gains ``_lm<scale>`` (and ``_ilm<scale>``). Scales 0 decode exactly as without fusion.

    decode-asr ... --method modified_beam --beam 8 --context-lexicon data/lang/lexicons \
        --context-score 1.5 --context-lists exp/slu/predicted-lists-dev.tsv
    decode-asr ... --method modified_beam --beam 20 --fusion-lm exp/asr/token_lm/best.pt \
        --lm-scale 0.3 --ilm-scale 0.1
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lhotse import CutSet

from asr.config import ModelConfig
from asr.context_graph import MAX_PHRASES, ContextBiasing, ContextGraph
from asr.data import Tokenizer, check_model_input, load_cuts, make_decode_dataloader
from asr.fusion import ShallowFusion, load_token_lm
from asr.model import Transducer, build_model
from asr.search import SEARCH_METHODS, Hypothesis, build_search
from common.checkpoint import (
    CheckpointError,
    find_last_checkpoint,
    load_checkpoint,
    load_model_state,
)
from common.cli import run_cli, save_config, setup_logging
from common.io import InputError, atomic_write, dir_lock, write_jsonl
from common.lattice import first_pass_score, write_nbest_lattices
from common.numeric import logaddexp
from common.wer import oracle_wer, write_results


@dataclass
class DecodeConfig:
    exp_dir: Path = field(default=Path("exp/asr/conformer_rnnt"), metadata={"help": "exp dir"})
    checkpoint: Path | None = field(
        default=None, metadata={"help": "checkpoint (default: the last epoch-N.pt in exp-dir)"}
    )
    bpe_model: Path = field(
        default=Path("data/lang_bpe_128/bpe.model"), metadata={"help": "sentencepiece model"}
    )
    cuts: list[Path] = field(
        default_factory=lambda: [
            Path("data/fbank/snips_cuts_dev.jsonl.gz"),
            Path("data/fbank/snips_cuts_test.jsonl.gz"),
        ],
        metadata={"help": "CutSets to decode"},
    )
    method: str = field(
        default="modified_beam", metadata={"help": f"search method: {sorted(SEARCH_METHODS)}"}
    )
    beam: int = field(default=8, metadata={"help": "beam size (beam methods)"})
    nbest: int = field(default=8, metadata={"help": "hypotheses kept per utterance"})
    max_sym_per_frame: int = field(
        default=3,
        metadata={"help": "greedy and modified_beam: max non-blank symbols per encoder frame"},
    )
    length_bonus: float = field(
        default=0.0,
        metadata={
            "help": "modified_beam: bonus per BPE token added to the score the beam is pruned "
            "and the n-best ranked on, so longer hypotheses stay in the beam; written as "
            "length_score beside the model's am_score (0 = off)"
        },
    )
    score_beam: float = field(
        default=math.inf,
        metadata={
            "help": "modified_beam: at each step keep only hypotheses whose score (the one the "
            "beam is pruned on) is within this many nats of the utterance's best (inf = off)"
        },
    )
    blank_skip_threshold: float = field(
        default=1.0,
        metadata={
            "help": "modified_beam: drop the encoder frames whose CTC blank posterior (the "
            "model's auxiliary CTC head) is above this before the search, as icefall's CTC "
            "blank-skip decoding (1 = off; asr/README.md, 'Blank skipping')"
        },
    )
    merge_same_text: bool = field(
        default=False,
        metadata={
            "help": "modified_beam: merge hypotheses whose BPE pieces spell the same text (two "
            "tokenisations of the same words) and keep --beam distinct texts per step, so the "
            "n-best list holds distinct word sequences (asr/README.md, 'Same-text merging')"
        },
    )
    max_duration: float = field(default=120.0, metadata={"help": "seconds of audio per batch"})
    max_utts: int = field(default=0, metadata={"help": "decode only the first N cuts (0 = all)"})
    lattices: bool = field(default=True, metadata={"help": "also write kaldifst lattices"})
    out_dir: Path | None = field(default=None, metadata={"help": "output dir (see above)"})
    num_threads: int = field(default=1, metadata={"help": "torch intra-op threads"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    context_lexicon: Path | None = field(
        default=None,
        metadata={"help": "biasing phrase list, or a folder of <list>.txt lists (modified_beam)"},
    )
    context_score: float = field(
        default=0.0,
        metadata={"help": "biasing bonus per matched BPE token (needs --context-lexicon)"},
    )
    context_lists: Path | None = field(
        default=None,
        metadata={
            "help": "TSV utt_id<TAB>list[,list...]: the lists biasing each utterance (absent: "
            "the 'global' list if any, else none); default: all lists for every utterance"
        },
    )
    context_max_phrases: int = field(
        default=MAX_PHRASES, metadata={"help": "most phrases a lexicon file may hold"}
    )
    fusion_lm: Path | None = field(
        default=None,
        metadata={"help": "modified_beam: token LM for shallow fusion (train-token-lm's best.pt)"},
    )
    lm_scale: float = field(
        default=0.0, metadata={"help": "shallow fusion: weight of the LM log-probability"}
    )
    ilm_scale: float = field(
        default=0.0,
        metadata={"help": "shallow fusion: weight subtracted x the internal-LM log-probability"},
    )

    def validate(self) -> None:
        """Raises :class:`InputError` (a ``ValueError``) naming the offending option."""
        if self.method not in SEARCH_METHODS:
            raise InputError(
                f"--method must be one of {sorted(SEARCH_METHODS)}, got {self.method!r}"
            )
        if self.nbest < 1 or self.beam < 1 or self.max_sym_per_frame < 1:
            raise InputError("--beam, --nbest and --max-sym-per-frame must be >= 1")
        if self.max_utts < 0 or self.max_duration <= 0:
            raise InputError("--max-utts must be >= 0 and --max-duration > 0")
        if not math.isfinite(self.length_bonus):
            raise InputError(f"--length-bonus must be finite, got {self.length_bonus}")
        if not self.score_beam > 0:
            raise InputError(f"--score-beam must be > 0, got {self.score_beam}")
        if not 0 < self.blank_skip_threshold <= 1:
            raise InputError(
                f"--blank-skip-threshold must be in (0, 1], got {self.blank_skip_threshold}"
            )
        beam_only = {  # option -> set away from its "off" value
            "--length-bonus": self.length_bonus != 0,
            "--score-beam": math.isfinite(self.score_beam),
            "--blank-skip-threshold": self.blank_skip_threshold < 1,
            "--merge-same-text": self.merge_same_text,
        }
        for option, used in beam_only.items():
            if used and self.method != "modified_beam":
                raise InputError(
                    f"{option}: search method {self.method!r} has none (use modified_beam)"
                )
        if not (math.isfinite(self.lm_scale) and math.isfinite(self.ilm_scale)):
            raise InputError("--lm-scale and --ilm-scale must be finite")
        if self.fusion_lm is None and (self.lm_scale or self.ilm_scale):
            raise InputError("--lm-scale and --ilm-scale need --fusion-lm")
        if self.fusion_lm is not None and self.method != "modified_beam":
            raise InputError(
                f"--fusion-lm: search method {self.method!r} has none (use modified_beam)"
            )
        if self.context_lexicon is None:
            if self.context_score != 0 or self.context_lists is not None:
                raise InputError("--context-score and --context-lists need --context-lexicon")
            return
        if not SEARCH_METHODS[self.method].supports_context:
            biasable = sorted(n for n, c in SEARCH_METHODS.items() if c.supports_context)
            raise InputError(
                f"--context-lexicon: search method {self.method!r} has no contextual biasing "
                f"(use {biasable})"
            )
        if not math.isfinite(self.context_score) or self.context_max_phrases < 1:
            raise InputError("--context-score must be finite and --context-max-phrases >= 1")

    @property
    def biased(self) -> bool:
        return self.context_lexicon is not None

    @property
    def suffix(self) -> str:
        suffix = self.method if self.method == "greedy" else f"{self.method}_beam{self.beam}"
        if self.length_bonus:
            suffix += f"_lb{self.length_bonus:g}"
        if math.isfinite(self.score_beam):
            suffix += f"_sb{self.score_beam:g}"
        if self.blank_skip_threshold < 1:
            suffix += f"_bs{self.blank_skip_threshold:g}"
        if self.merge_same_text:
            suffix += "_mt"
        if self.fusion_lm is not None:
            suffix += f"_lm{self.lm_scale:g}" + (
                f"_ilm{self.ilm_scale:g}" if self.ilm_scale else ""
            )
        return f"{suffix}_ctx{self.context_score:g}" if self.biased else suffix


DECODE_PRESETS = {
    "tiny": DecodeConfig(beam=4, nbest=4, max_duration=30.0),
    "default": DecodeConfig(),
    "large": DecodeConfig(max_duration=600.0),
}


def load_transducer(path: str | Path, device: str = "cpu") -> tuple[Transducer, dict]:
    """Build the model from the config stored in checkpoint ``path`` and load its weights.

    Raises:
        CheckpointError: naming ``path`` when it is missing, corrupt, or not a ``train-asr``
            / ``average-checkpoints`` checkpoint.
    """
    ckpt = load_checkpoint(path, map_location=device)
    model_cfg = ModelConfig.from_checkpoint(ckpt, path)
    model = build_model(model_cfg)
    load_model_state(model, ckpt, path)
    return model.to(device).eval(), ckpt


def to_nbest(
    hyps: list[Hypothesis],
    tok: Tokenizer,
    n: int,
    context: bool = False,
    length: bool = False,
    fusion: bool = False,
) -> list[dict]:
    """Merge hypotheses with identical word sequences (log-sum-exp of ``am_score``), best first
    by the score the search ranked by (``am_score + context_score + length_score +
    fusion_score``), top ``n``.

    With ``context`` (``length``, ``fusion``) each record also carries ``context_score``
    (``length_score``, ``fusion_score``), the biasing (length, fusion) score of the merged
    hypothesis of best total (the tokens kept are that hypothesis' too).
    """
    merged: dict[str, dict] = {}
    bonus: dict[str, tuple[float, float, float]] = {}
    for h in sorted(hyps, key=lambda h: -h.total):
        words = " ".join(tok.decode(list(h.tokens)).split())
        if words not in merged:
            merged[words] = {"words": words, "tokens": list(h.tokens), "am_score": h.score}
            bonus[words] = (h.context_score, h.length_score, h.fusion_score)
        else:
            merged[words]["am_score"] = logaddexp(merged[words]["am_score"], h.score)
    ranked = sorted(merged.values(), key=lambda r: -(r["am_score"] + sum(bonus[r["words"]])))[:n]
    for r in ranked:
        ctx, lsc, fus = bonus[r["words"]]
        if context:
            r["context_score"] = round(float(ctx), 5)
        if length:
            r["length_score"] = round(float(lsc), 5)
        if fusion:
            r["fusion_score"] = round(float(fus), 5)
        r["am_score"] = round(float(r["am_score"]), 5)
    return ranked


def set_name(path: Path) -> str:
    """``dev`` of ``snips_cuts_dev.jsonl.gz``: what follows ``_cuts_`` (so that a split name
    may hold ``_``: ``test_unseen_engine``), else what follows the last ``_``."""
    name = path.name.split(".")[0]
    if "_cuts_" in name:
        return name.split("_cuts_", 1)[1]
    return name.split("_")[-1] if "_" in name else name


def load_decode_cuts(path: Path, cfg: DecodeConfig, model_cfg: ModelConfig) -> CutSet:
    """The cuts of one set to decode (the first ``--max-utts``), checked against the model.

    Raises:
        InputError: naming ``path`` when it is missing, unreadable, not a CutSet, empty, or
            does not have what the model reads (features of its dimension, or 16 kHz audio).
    """
    return _load_set(path, cfg, model_cfg)[0]


def _load_set(path: Path, cfg: DecodeConfig, model_cfg: ModelConfig) -> tuple[CutSet, list[str]]:
    """(the cuts to decode, the utterance ids of the whole manifest, ``--max-utts`` or not).

    Utterance ids are those of the n-best records (:func:`_record_ids`).
    """
    cuts = load_cuts(path)
    check_model_input(cuts, model_cfg, path)
    ids = _record_ids(cuts)
    if cfg.max_utts:
        cuts = cuts.subset(first=min(cfg.max_utts, len(cuts)))
    return cuts, ids


def _record_ids(cuts: CutSet) -> list[str]:
    """The n-best record ids: each cut's supervision id (its own id if it has none), as
    ``asr.data.AsrDataset`` gives them in ``batch["ids"]``."""
    return [c.supervisions[0].id if c.supervisions else c.id for c in cuts]


def first_pass_total(hyp: dict) -> float:
    """The score an n-best record's hypothesis was ranked by: ``am_score`` plus its
    ``length_score``, ``context_score`` and ``fusion_score`` where present (the lattices' path
    score; the second pass's ``Hyp.first_pass_score`` reads the same fields)."""
    return first_pass_score(
        hyp["am_score"], hyp.get("length_score"), hyp.get("context_score"), hyp.get("fusion_score")
    )


def decode_set(
    model: Transducer,
    tok: Tokenizer,
    cuts_path: Path,
    cfg: DecodeConfig,
    out_dir: Path,
    cuts: CutSet | None = None,
    biasing: ContextBiasing | None = None,
    fusion: ShallowFusion | None = None,
) -> dict:
    """Decode one set (``cuts``, read from ``cuts_path`` if not given) into ``out_dir``,
    biased with ``biasing``'s graph of each utterance if given, with LM shallow ``fusion`` if
    given."""
    if cuts is None:
        cuts = load_decode_cuts(cuts_path, cfg, model.cfg)
    name = set_name(cuts_path)
    search = build_search(
        cfg.method,
        beam=cfg.beam,
        max_sym_per_frame=cfg.max_sym_per_frame,
        length_bonus=cfg.length_bonus,
        score_beam=cfg.score_beam,
        blank_skip_threshold=cfg.blank_skip_threshold,
        merge_pieces=tok.text_pieces() if cfg.merge_same_text else None,
        **({} if fusion is None else {"fusion": fusion}),
    )
    dl = make_decode_dataloader(cuts, tok, cfg.max_duration, waveform=model.cfg.waveform_input)
    records, results = [], []
    audio_s = sum(c.duration for c in cuts)
    graphs: dict[str, ContextGraph | None] = {}
    t0 = time.time()
    if biasing is not None:  # built before decoding so that decode_s is the search alone
        graphs = {uid: biasing.graph_for(uid) for uid in _record_ids(cuts)}
    graph_s = time.time() - t0
    t0 = time.time()
    for batch in dl:
        feats = batch["feats"].to(cfg.device)  # (N, T, C) fbank or (N, S) waveform
        lens = batch["feat_lens"].to(cfg.device)
        if biasing is None:
            nbests = search(model, feats, lens)
        else:
            nbests = search(model, feats, lens, contexts=[graphs[uid] for uid in batch["ids"]])
        for uid, ref, hyps in zip(batch["ids"], batch["texts"], nbests, strict=True):
            nb = to_nbest(
                hyps,
                tok,
                cfg.nbest,
                context=biasing is not None,
                length=cfg.length_bonus != 0,
                fusion=fusion is not None,
            )
            records.append({"id": uid, "ref": ref, "hyps": nb})
            results.append((uid, ref.split(), nb[0]["words"].split() if nb else []))
    decode_s = time.time() - t0
    records.sort(key=lambda r: r["id"])
    write_jsonl(out_dir / f"nbest-{name}.jsonl.gz", records)
    if cfg.lattices:
        write_nbest_lattices(
            out_dir / f"lattices-{name}.ark",
            out_dir / f"words-{name}.txt",
            {r["id"]: [(h["words"], first_pass_total(h)) for h in r["hyps"]] for r in records},
        )
    stats = write_results(out_dir, name, cfg.suffix, results)
    oracle = oracle_wer(
        {r["id"]: r["ref"].split() for r in records},
        {r["id"]: [h["words"].split() for h in r["hyps"]] for r in records},
    )
    with atomic_write(out_dir / f"oracle-wer-{name}-{cfg.suffix}.txt") as f:
        f.write(f"{oracle.kaldi_line()}  (n-best oracle, n={cfg.nbest})\n")
    summary = {
        "set": name,
        "suffix": cfg.suffix,
        "utterances": len(records),
        "wer": round(stats.wer, 3),
        "oracle_wer": round(oracle.wer, 3),
        "avg_nbest": round(sum(len(r["hyps"]) for r in records) / max(len(records), 1), 3),
        "audio_s": round(audio_s, 2),
        "decode_s": round(decode_s, 2),
        "rtf": round(decode_s / max(audio_s, 1e-9), 5),
    }
    if biasing is not None:
        summary["context"] = {
            "lexicon": str(cfg.context_lexicon),
            "score": cfg.context_score,
            "utterance_lists": None if cfg.context_lists is None else str(cfg.context_lists),
            "biased_utterances": sum(g is not None for g in graphs.values()),
            "graph_build_s": round(graph_s, 2),
            **biasing.summary(),
        }
    with atomic_write(out_dir / f"decode-summary-{name}-{cfg.suffix}.json") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    logging.info("%s %s: %s", name, cfg.suffix, stats.kaldi_line())
    logging.info("%s %s: n-best oracle %s", name, cfg.suffix, oracle.kaldi_line())
    logging.info(
        "%s %s: %.1f s for %.1f s of audio, RTF %.4f",
        name,
        cfg.suffix,
        decode_s,
        audio_s,
        summary["rtf"],
    )
    return summary


def check_set_names(cfg: DecodeConfig) -> list[str]:
    """The set name of each of ``cfg.cuts`` (``dev`` from ``snips_cuts_dev.jsonl.gz``).

    Raises:
        InputError: no CutSet, or two CutSets with one set name (their outputs would collide).
    """
    if not cfg.cuts:
        raise InputError("--cuts: no CutSet to decode")
    names = [set_name(Path(p)) for p in cfg.cuts]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(
            f"--cuts: several CutSets map to the set name(s) {dup}; their outputs would "
            "overwrite each other (decode them into different --out-dir)"
        )
    return names


def resolve_checkpoint(cfg: DecodeConfig) -> Path:
    """``--checkpoint``, else the last ``epoch-N.pt`` of ``--exp-dir``."""
    ckpt_path = cfg.checkpoint or find_last_checkpoint(cfg.exp_dir)
    if ckpt_path is None:
        raise CheckpointError(f"{cfg.exp_dir}: no checkpoint to decode (give --checkpoint)")
    return Path(ckpt_path)


def load_model_and_tokenizer(cfg: DecodeConfig, ckpt_path: Path) -> tuple[Transducer, Tokenizer]:
    """The model of ``ckpt_path`` and the BPE model, checked against each other (threads set)."""
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    model, _ = load_transducer(ckpt_path, cfg.device)
    tok = Tokenizer(cfg.bpe_model)
    if tok.vocab_size != model.cfg.vocab_size:
        raise CheckpointError(
            f"{ckpt_path}: model has {model.cfg.vocab_size} outputs but {cfg.bpe_model} "
            f"has {tok.vocab_size} pieces"
        )
    return model, tok


def load_biasing(
    cfg: DecodeConfig, tok: Tokenizer, utt_ids: list[str], bonus: float
) -> ContextBiasing:
    """``--context-lexicon`` / ``--context-lists`` read and checked against ``utt_ids`` (every
    utterance of the sets to decode), with ``bonus`` per matched token."""
    assert cfg.context_lexicon is not None
    return ContextBiasing.load(
        cfg.context_lexicon,
        tok,
        bonus,
        cfg.context_lists,
        utt_ids=utt_ids,
        max_phrases=cfg.context_max_phrases,
    )


def run(cfg: DecodeConfig) -> list[dict]:
    """Decode every set of ``cfg.cuts``; returns their summaries.

    Every input (checkpoint, BPE model, each CutSet) is checked before the first set is
    decoded. The output folder is locked (:func:`common.io.dir_lock`) for the whole run, so a
    second ``decode-asr`` into the same folder fails at once instead of mixing its files in.
    """
    cfg.validate()
    check_set_names(cfg)
    ckpt_path = resolve_checkpoint(cfg)
    out_dir = cfg.out_dir or Path(cfg.exp_dir) / cfg.suffix
    with dir_lock(out_dir, "output folder"):
        setup_logging(out_dir / "log-decode.txt")
        model, tok = load_model_and_tokenizer(cfg, ckpt_path)
        loaded = [_load_set(Path(p), cfg, model.cfg) for p in cfg.cuts]
        sets = [cuts for cuts, _ in loaded]
        biasing = None
        if cfg.biased:
            utt_ids = [uid for _, ids in loaded for uid in ids]
            biasing = load_biasing(cfg, tok, utt_ids, cfg.context_score)
        fusion = None
        if cfg.fusion_lm is not None:
            lm = load_token_lm(cfg.fusion_lm, tok.sp_pieces()).to(cfg.device)
            fusion = ShallowFusion(lm, cfg.lm_scale, cfg.ilm_scale)
        save_config(out_dir / "decode-config.json", cfg, extra={"checkpoint": str(ckpt_path)})
        logging.info("decoding with %s (%s)", ckpt_path, cfg)
        return [
            decode_set(model, tok, Path(p), cfg, out_dir, cuts, biasing, fusion)
            for p, cuts in zip(cfg.cuts, sets, strict=True)
        ]


def _print_summaries(cfg: DecodeConfig) -> None:
    for summary in run(cfg):
        print(json.dumps(summary))


def main(argv: list[str] | None = None) -> None:
    run_cli(
        "decode-asr",
        DecodeConfig,
        _print_summaries,
        __doc__,
        argv,
        presets=DECODE_PRESETS,
        preset_help="search sizes (tiny: beam 4, n-best 4; default/large: 8, 8); the model size "
        "comes from the checkpoint (default: default)",
        group_title="decoding",
    )


if __name__ == "__main__":
    main()
