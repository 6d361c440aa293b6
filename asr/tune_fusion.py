"""LM shallow fusion with its weights tuned on dev: decode the tune set at every point of the
grid ``--lm-scales`` x ``--ilm-scales`` x ``--length-bonuses``, keep the point of lowest WER,
decode every set with it.

The fused first pass of the recipe (``decode-asr --fusion-lm ... --lm-scale L --ilm-scale I
--length-bonus B``) with ``(L, I, B)`` chosen on the tune set only; the other sets are decoded
once, with the chosen point. The length bonus is tuned with the scales because the LM's
log-probabilities make every token cost: without a larger bonus the fused search deletes words
(asr/README.md, "LM shallow fusion"). The objective is the tune set's 1-best WER; ties go to the
smaller LM scale, then the smaller ILM scale, then the smaller bonus. Every other option is
``decode-asr``'s, with the same meaning and checks (contextual biasing can be combined).

Usage:
    tune-fusion --checkpoint exp/asr/conformer_rnnt/avg.pt --bpe-model data/lang_bpe_128/bpe.model \\
        --cuts data/fbank/snips_cuts_dev.jsonl.gz data/fbank/snips_cuts_test.jsonl.gz \\
        --tune-set dev --fusion-lm exp/asr/token_lm/best.pt --lm-scales 0.1 0.2 0.3 \\
        --ilm-scales 0 0.1 --length-bonuses 0.5 0.75 --method modified_beam --beam 20 \\
        --nbest 16 --out-dir exp/asr/conformer_rnnt/decode_fused

OUTPUTS (in --out-dir):
    tune/lm<L>_ilm<I>_lb<B>/...  the tune set decoded at each point (decode-asr's files)
    fusion-tuned.json           the grid (point, WER, oracle WER, decode seconds), the chosen
                                point, every set's WER
    nbest-<set>.jsonl.gz ...    every set decoded at the chosen point (decode-asr's files; the
                                tune set's are copied from its grid point, not decoded again)

A re-run reuses a grid point decoded with the same options, checkpoint and fusion LM (their
SHA-256), tune-set cuts and ``asr``/``common`` sources (``point.json``, as ``tune-context``);
any other grid point and the final decodes are run again.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from asr.decode import (
    DecodeConfig,
    _load_set,
    check_set_names,
    decode_set,
    load_biasing,
    load_model_and_tokenizer,
    resolve_checkpoint,
)
from asr.fusion import ShallowFusion, load_token_lm
from asr.tune_context import (
    _grid_point,
    _inputs_record,
    _point_record,
    final_decodes,
    set_results,
    tuner_main,
    write_tuned,
)
from common.cli import save_config, setup_logging
from common.env import source_fingerprint
from common.io import InputError, atomic_write, dir_lock, file_sha256


@dataclass
class TuneFusionConfig(DecodeConfig):
    lm_scales: list[float] = field(
        default_factory=lambda: [0.1, 0.2, 0.3], metadata={"help": "LM scales tried"}
    )
    ilm_scales: list[float] = field(
        default_factory=lambda: [0.0, 0.1], metadata={"help": "internal-LM scales tried"}
    )
    length_bonuses: list[float] = field(
        default_factory=lambda: [0.5, 0.75], metadata={"help": "length bonuses tried"}
    )
    tune_set: str = field(
        default="dev", metadata={"help": "set name (from --cuts) the point is chosen on"}
    )

    def validate(self) -> None:
        if self.fusion_lm is None:
            raise InputError("tune-fusion needs --fusion-lm")
        if self.lm_scale or self.ilm_scale:
            raise InputError("tune-fusion: give the candidates with --lm-scales / --ilm-scales")
        for name, grid in (
            ("--lm-scales", self.lm_scales),
            ("--ilm-scales", self.ilm_scales),
            ("--length-bonuses", self.length_bonuses),
        ):
            if not grid or any(not (x == x and abs(x) != float("inf")) for x in grid):
                raise InputError(f"{name} must be finite numbers, got {grid}")
        if any(x < 0 for x in self.lm_scales + self.ilm_scales):
            raise InputError("--lm-scales and --ilm-scales must be >= 0")
        super().validate()


def point_name(lm: float, ilm: float, lb: float) -> str:
    return f"lm{lm:g}_ilm{ilm:g}_lb{lb:g}"


def tune_fusion(cfg: TuneFusionConfig) -> dict:
    cfg.validate()
    names = check_set_names(cfg)
    if cfg.tune_set not in names:
        raise InputError(f"--tune-set {cfg.tune_set!r} is none of the --cuts sets {names}")
    ckpt_path = resolve_checkpoint(cfg)
    assert cfg.fusion_lm is not None
    code = source_fingerprint("asr", "common")  # the code this process decodes with
    tune_path = Path(cfg.cuts[names.index(cfg.tune_set)])
    out_dir = cfg.out_dir or Path(cfg.exp_dir) / "decode_fused"
    with dir_lock(out_dir, "output folder"):
        setup_logging(out_dir / "log-tune-fusion.txt")
        model, tok = load_model_and_tokenizer(cfg, ckpt_path)
        lm = load_token_lm(cfg.fusion_lm, tok.sp_pieces()).to(cfg.device)
        inputs = {  # tune-context's record (checkpoint, lexicon, lists, cuts) + the fusion LM
            **_inputs_record(cfg, ckpt_path, tune_path),
            "fusion_lm_sha256": file_sha256(cfg.fusion_lm),
        }
        loaded = {
            n: _load_set(Path(p), cfg, model.cfg) for n, p in zip(names, cfg.cuts, strict=True)
        }
        biasing = None
        if cfg.biased:
            utt_ids = [uid for _, ids in loaded.values() for uid in ids]
            biasing = load_biasing(cfg, tok, utt_ids, cfg.context_score)
        save_config(out_dir / "decode-config.json", cfg, extra={"checkpoint": str(ckpt_path)})
        grid, points = [], {}
        for lm_s, ilm_s, lb in itertools.product(cfg.lm_scales, cfg.ilm_scales, cfg.length_bonuses):
            key = (float(lm_s), float(ilm_s), float(lb))
            point = dataclasses.replace(cfg, lm_scale=key[0], ilm_scale=key[1], length_bonus=key[2])
            folder = out_dir / "tune" / point_name(*key)
            summary = _grid_point(
                folder, cfg.tune_set, point.suffix, point, ckpt_path, code, inputs
            )
            if summary is None:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "point.json").unlink(missing_ok=True)
                summary = decode_set(
                    model,
                    tok,
                    tune_path,
                    point,
                    folder,
                    loaded[cfg.tune_set][0],
                    biasing,
                    ShallowFusion(lm, key[0], key[1]),
                )
                with atomic_write(folder / "point.json") as f:
                    json.dump(_point_record(point, ckpt_path, code, inputs), f, indent=2)
            else:
                logging.info("%s: reusing %s", point_name(*key), folder)
            points[key] = (folder, summary)
            grid.append(
                {
                    "lm_scale": key[0],
                    "ilm_scale": key[1],
                    "length_bonus": key[2],
                    "wer": summary["wer"],
                    "oracle_wer": summary["oracle_wer"],
                    "decode_s": summary["decode_s"],
                }
            )
            logging.info("%s: %s WER %.2f", point_name(*key), cfg.tune_set, summary["wer"])
        best = min(grid, key=lambda g: (g["wer"], g["lm_scale"], g["ilm_scale"], g["length_bonus"]))
        key = (best["lm_scale"], best["ilm_scale"], best["length_bonus"])
        logging.info("chosen %s (%s WER %.2f)", point_name(*key), cfg.tune_set, best["wer"])
        final = dataclasses.replace(cfg, lm_scale=key[0], ilm_scale=key[1], length_bonus=key[2])
        fusion = ShallowFusion(lm, key[0], key[1])
        summaries = final_decodes(
            cfg,
            names,
            points[key],
            out_dir,
            lambda p, cuts: decode_set(model, tok, p, final, out_dir, cuts, biasing, fusion),
            loaded,
        )
        result = {
            "tune_set": cfg.tune_set,
            "objective": "wer",
            "grid": grid,
            "chosen": {"lm_scale": key[0], "ilm_scale": key[1], "length_bonus": key[2]},
            "fusion_lm": str(cfg.fusion_lm),
            "checkpoint": str(ckpt_path),
            "sets": set_results(summaries),
        }
        write_tuned(out_dir / "fusion-tuned.json", result)
        return result


def main(argv: list[str] | None = None) -> None:
    tuner_main("tune-fusion", TuneFusionConfig, tune_fusion, __doc__, argv)


if __name__ == "__main__":
    main()
