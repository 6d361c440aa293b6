"""Contextual biasing with its bonus tuned on dev: decode the tune set at every context score of
``--scores``, keep the one of lowest WER, decode every set with it.

The biased decoding of the recipe (``decode-asr --context-lexicon ... --context-score S``) with
``S`` chosen on the tune set only: the other sets are decoded once, with the chosen score.
The objective is the tune set's 1-best WER (rare words are most of what biasing changes, but
tuning on them alone trades common-word errors for rare-word hits); ties go to the smaller
score. Every other option is ``decode-asr``'s, with the same meaning and checks.

The scores are tried in the order given. With ``--patience N`` the grid stops after N scores in a
row whose WER is above the best so far (a line search: give the scores in ascending order; the
scores not tried are listed in ``context-tuned.json``). ``--score-from FILE`` takes the chosen
score of another run's ``context-tuned.json`` instead of a grid (the recipe's gold-intent bound
uses the predicted-intent run's score); the tune set is still decoded, once, at that score.

Usage:
    tune-context --checkpoint exp/asr/conformer_rnnt/avg.pt --bpe-model data/lang_bpe_128/bpe.model \\
        --cuts data/fbank/snips_cuts_dev.jsonl.gz data/fbank/snips_cuts_test.jsonl.gz \\
        --tune-set dev --scores 0.25 0.5 1 1.5 --context-lexicon data/lang/lexicons \\
        --context-lists exp/context/predicted.tsv --method modified_beam --beam 16 --nbest 16 \\
        --out-dir exp/asr/conformer_rnnt/decode_biased_predicted

OUTPUTS (in --out-dir):
    tune/ctx<S>/...       the tune set decoded at each score (decode-asr's files)
    context-tuned.json    the grid (score, WER, oracle WER, decode seconds), the scores not tried
                          (--patience), the chosen score
    nbest-<set>.jsonl.gz ... every set decoded at the chosen score (decode-asr's files; the tune
                          set's are copied from its grid point, not decoded again)

A re-run reuses a grid point decoded with the same checkpoint, options, inputs and decoding code
(``point.json``, written after its decode: the options, the checkpoint's path and SHA-256, the
size and modification time of the lexicon (every file of a lexicon folder), the per-utterance
lists and the tune set's cuts, and a hash of the ``asr`` and ``common`` sources); any other grid
point and the final decodes are run again. (Before the SHA-256, a checkpoint retrained in place,
as a recipe re-run with a longer training does, left the old model's grid points reused.)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from asr.decode import (
    DECODE_PRESETS,
    DecodeConfig,
    _load_set,
    check_set_names,
    decode_set,
    load_biasing,
    load_model_and_tokenizer,
    resolve_checkpoint,
)
from common.cli import run_cli, save_config, setup_logging
from common.env import source_fingerprint
from common.io import InputError, atomic_path, atomic_write, dir_lock, file_sha256
from common.stages import fingerprint


@dataclass
class TuneContextConfig(DecodeConfig):
    scores: list[float] = field(
        default_factory=lambda: [0.25, 0.5, 1.0, 1.5],
        metadata={"help": "context scores tried on the tune set"},
    )
    tune_set: str = field(
        default="dev", metadata={"help": "set name (from --cuts) the score is chosen on"}
    )
    patience: int = field(
        default=0,
        metadata={
            "help": "stop the grid after this many scores in a row with a WER above the best "
            "so far (0: try every score)"
        },
    )
    score_from: Path | None = field(
        default=None,
        metadata={
            "help": "context-tuned.json of another run: use its chosen score, no grid "
            "(--scores is then ignored)"
        },
    )

    def validate(self) -> None:
        if self.context_lexicon is None:
            raise InputError("tune-context needs --context-lexicon")
        if self.context_score != 0:
            raise InputError("tune-context: give the candidates with --scores, not --context-score")
        if not self.scores or any(s < 0 or s != s for s in self.scores):
            raise InputError(f"--scores must be non-negative numbers, got {self.scores}")
        if self.patience < 0:
            raise InputError(f"--patience must be >= 0, got {self.patience}")
        super().validate()


def chosen_score_of(path: Path) -> float:
    """The ``chosen_score`` of a ``context-tuned.json`` (``--score-from``)."""
    try:
        score = json.loads(Path(path).read_text(encoding="utf-8"))["chosen_score"]
    except FileNotFoundError:
        raise InputError(f"--score-from {path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"--score-from {path}: not a context-tuned.json ({e})") from None
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not score >= 0:
        raise InputError(f"--score-from {path}: chosen_score {score!r} is not a score >= 0")
    return float(score)


def worse_in_a_row(wers: list[float]) -> int:
    """How many of the last values of ``wers`` in a row are above the best value before them."""
    n = 0
    for i in range(len(wers) - 1, 0, -1):
        if wers[i] > min(wers[:i]):
            n += 1
        else:
            break
    return n


def _inputs_record(cfg: TuneContextConfig, ckpt: Path, tune_cuts: Path) -> dict:
    """What a grid point's decode reads besides its options: the checkpoint's bytes (SHA-256)
    and the size and mtime of the lexicon, the per-utterance lists and the tune set's cuts
    (``common.stages.fingerprint``; a rewritten file with the same bytes only costs a decode)."""
    files = {"lexicon": cfg.context_lexicon, "lists": cfg.context_lists, "tune_cuts": tune_cuts}
    return {
        "ckpt_sha256": file_sha256(ckpt),
        **{k: None if v is None else fingerprint(v) for k, v in files.items()},
    }


def _point_record(cfg: TuneContextConfig, ckpt: Path, code: str, inputs: dict) -> dict:
    """What a grid point's decode depends on (compared on a re-run): the options, the
    checkpoint, the inputs (:func:`_inputs_record`) and the code (``source_fingerprint`` of the
    decoding sources; a point decoded by other search code is not reused)."""
    return {
        "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
        "ckpt": str(ckpt),
        "inputs": inputs,
        "code": code,
    }


def _grid_point(
    out: Path,
    tune: str,
    suffix: str,
    cfg: TuneContextConfig,
    ckpt: Path,
    code: str,
    inputs: dict,
) -> dict | None:
    """The summary of an earlier decode of this grid point, if it was made with ``cfg``: its
    ``point.json`` (written after the decode's outputs, removed before a new decode) holds the
    record of every option, the score, lexicon and lists included (:func:`_point_record`)."""
    path = out / f"decode-summary-{tune}-{suffix}.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        record = json.loads((out / "point.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if record == _point_record(cfg, ckpt, code, inputs) else None


def _copy_outputs(folder: Path, out_dir: Path) -> None:
    """Every decode output of a grid point (``point.json`` aside) into ``out_dir``, each
    renamed into place only once copied."""
    for src in sorted(folder.iterdir()):
        if src.is_file() and src.name != "point.json":
            with atomic_path(out_dir / src.name) as tmp:
                shutil.copyfile(src, tmp)


def tune_context(cfg: TuneContextConfig) -> dict:
    cfg.validate()
    names = check_set_names(cfg)
    if cfg.tune_set not in names:
        raise InputError(f"--tune-set {cfg.tune_set!r} is none of the --cuts sets {names}")
    ckpt_path = resolve_checkpoint(cfg)
    code = source_fingerprint("asr", "common")  # the code this process decodes with
    tune_path = Path(cfg.cuts[names.index(cfg.tune_set)])
    inputs = _inputs_record(cfg, ckpt_path, tune_path)
    scores = list(cfg.scores) if cfg.score_from is None else [chosen_score_of(cfg.score_from)]
    out_dir = cfg.out_dir or Path(cfg.exp_dir) / "decode_biased"
    with dir_lock(out_dir, "output folder"):
        setup_logging(out_dir / "log-tune-context.txt")
        model, tok = load_model_and_tokenizer(cfg, ckpt_path)
        loaded = {
            n: _load_set(Path(p), cfg, model.cfg) for n, p in zip(names, cfg.cuts, strict=True)
        }
        utt_ids = [uid for _, ids in loaded.values() for uid in ids]
        biasing = load_biasing(cfg, tok, utt_ids, 0.0)  # the bonus is set per grid point
        save_config(out_dir / "decode-config.json", cfg, extra={"checkpoint": str(ckpt_path)})
        if cfg.score_from is not None:
            logging.info("context score %g from %s (no grid)", scores[0], cfg.score_from)
        grid, points, not_tried = [], {}, []
        for i, score in enumerate(scores):
            point = dataclasses.replace(cfg, context_score=float(score))
            folder = out_dir / "tune" / f"ctx{score:g}"
            summary = _grid_point(
                folder, cfg.tune_set, point.suffix, point, ckpt_path, code, inputs
            )
            if summary is None:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "point.json").unlink(missing_ok=True)
                scored = dataclasses.replace(biasing, bonus=float(score), graphs={})
                summary = decode_set(
                    model, tok, tune_path, point, folder, loaded[cfg.tune_set][0], scored
                )
                with atomic_write(folder / "point.json") as f:
                    json.dump(_point_record(point, ckpt_path, code, inputs), f, indent=2)
            else:
                logging.info("score %g: reusing %s", score, folder)
            points[float(score)] = (folder, summary)
            grid.append(
                {
                    "score": float(score),
                    "wer": summary["wer"],
                    "oracle_wer": summary["oracle_wer"],
                    "decode_s": summary["decode_s"],
                }
            )
            logging.info("context score %g: %s WER %.2f", score, cfg.tune_set, summary["wer"])
            if cfg.patience and worse_in_a_row([g["wer"] for g in grid]) >= cfg.patience:
                not_tried = [float(s) for s in scores[i + 1 :]]
                if not_tried:
                    logging.info(
                        "%d score(s) in a row above the best %s WER: not trying %s",
                        cfg.patience,
                        cfg.tune_set,
                        " ".join(f"{s:g}" for s in not_tried),
                    )
                break
        best = min(grid, key=lambda g: (g["wer"], g["score"]))
        logging.info(
            "chosen context score %g (%s WER %.2f)", best["score"], cfg.tune_set, best["wer"]
        )
        final = dataclasses.replace(cfg, context_score=best["score"])
        chosen = dataclasses.replace(biasing, bonus=best["score"], graphs={})
        summaries = final_decodes(
            cfg,
            names,
            points[best["score"]],
            out_dir,
            lambda p, cuts: decode_set(model, tok, p, final, out_dir, cuts, chosen),
            loaded,
        )
        result = {
            "tune_set": cfg.tune_set,
            "objective": "wer",
            "grid": grid,
            "not_tried": not_tried,
            "score_from": None if cfg.score_from is None else str(cfg.score_from),
            "chosen_score": best["score"],
            "lexicon": str(cfg.context_lexicon),
            "utterance_lists": None if cfg.context_lists is None else str(cfg.context_lists),
            "checkpoint": str(ckpt_path),
            "sets": set_results(summaries),
        }
        write_tuned(out_dir / "context-tuned.json", result)
        return result


def final_decodes(
    cfg, names: list[str], tuned_point: tuple[Path, dict], out_dir: Path, decode, loaded
):
    """Every set of ``cfg.cuts`` at the chosen grid point: the tune set's files copied from its
    grid point folder (``tuned_point`` = (folder, summary)), the others decoded with
    ``decode(path, cuts)``; returns the summaries in ``names`` order."""
    summaries = []
    for n, p in zip(names, cfg.cuts, strict=True):
        if n == cfg.tune_set:  # decoded at this point already: its grid point's files
            folder, summary = tuned_point
            _copy_outputs(folder, out_dir)
            summaries.append(summary)
        else:
            summaries.append(decode(Path(p), loaded[n][0]))
    return summaries


def set_results(summaries: list[dict]) -> dict:
    """Per set: WER, oracle WER, decode seconds (the ``sets`` of a ``*-tuned.json``)."""
    return {s["set"]: {k: s[k] for k in ("wer", "oracle_wer", "decode_s")} for s in summaries}


def write_tuned(path: Path, result: dict) -> None:
    with atomic_write(path) as f:
        json.dump(result, f, indent=2)
        f.write("\n")


def tuner_main(prog: str, cls: type, tune, doc: str, argv: list[str] | None) -> None:
    """The ``main`` of a tuner: ``cls`` (a :class:`DecodeConfig` subclass) over decode-asr's
    presets; prints ``tune(cfg)`` as JSON."""
    run_cli(
        prog,
        cls,
        lambda cfg: print(json.dumps(tune(cfg))),
        doc,
        argv,
        presets={k: cls(**dataclasses.asdict(v)) for k, v in DECODE_PRESETS.items()},
        preset_help="search sizes as decode-asr's presets (default: default)",
        group_title="decoding and tuning",
    )


def main(argv: list[str] | None = None) -> None:
    tuner_main("tune-context", TuneContextConfig, tune_context, __doc__, argv)


if __name__ == "__main__":
    main()
