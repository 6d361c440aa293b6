"""Read the scored systems of an experiment matrix back for ``make-report``, and pair them.

For every system of the matrix (:mod:`rescoring.experiments`), ``<rescore-dir>/<system>/`` holds
``metrics-{set}.json`` and ``per-utt-{set}.jsonl.gz`` (``score-wer``), and for a tuned system
``tuned.json`` and ``sweep-{tune_set}.tsv`` (``tune-rescoring``). A system whose folder or
metrics are missing is "not run" (logged, listed so in the report).

Every file is read only when its set manifest vouches for it (:mod:`rescoring.outputs`): a folder
holding files of different or unfinished runs is an error that says which stage to re-run.
Files are type-checked (errors name file and line), and two systems scored on different
utterances cannot be compared (an error, not a wrong p-value).

Usage:
    results = collect(rescore_dir, exps)       # system -> set -> metric -> {value, ci95}
    pairs = PairedTests(rescore_dir, results, exps.eval_set)
    t = pairs.test("first_pass", "mt", "rare_wer")
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from common.io import InputError, open_text, read_jsonl
from rescoring import loglinear
from rescoring.experiments import Experiments
from rescoring.fields import at, check_number, get_int, get_str, is_number, shown
from rescoring.metrics import (
    METRICS,
    UttCounts,
    paired_bootstrap_diff_seeds,
    seed_bootstrap_ci,
)
from rescoring.outputs import verify_output
from rescoring.params import read_tuned
from rescoring.slurp_metrics import SLURP_METRICS


def read_json(path: Path):
    """A JSON file; errors name the file (and line)."""
    with open_text(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def _check_ci(value, where: str, name: str) -> None:
    if value is None:
        return
    if not (isinstance(value, list) and len(value) == 2 and all(map(is_number, value))):
        raise InputError(f"{where}: field '{name}' must be null or [low, high], got {shown(value)}")


def read_metrics(path: Path) -> dict:
    """``metrics-{set}.json`` of ``score-wer``, verified against its set manifest and typed."""
    verify_output(path)
    m = read_json(path)
    where = at(path)
    if not isinstance(m, dict):
        raise InputError(f"{where}: expected a JSON object, got {shown(m)}")
    for k in (*METRICS, "rare_share"):
        if m.get(k) is not None:
            check_number(m[k], where, k)
    ci = m.get("ci95") or {}
    if not isinstance(ci, dict):
        raise InputError(f"{where}: field 'ci95' must be an object, got {shown(ci)}")
    for k in METRICS:
        _check_ci(ci.get(k), where, f"ci95.{k}")
    get_int(m, "utterances", where, minimum=0)
    per_intent = m.get("per_intent")
    if per_intent is not None and not isinstance(per_intent, dict):
        raise InputError(f"{where}: field 'per_intent' must be an object, got {shown(per_intent)}")
    for intent, v in (per_intent or {}).items():
        name = f"per_intent.{intent}"
        if not isinstance(v, dict):
            raise InputError(f"{where}: field '{name}' must be an object, got {shown(v)}")
        get_int(v, "utterances", where, f"{name}.utterances", minimum=0)
        for k in ("wer", "rare_wer"):
            if v.get(k) is not None:
                check_number(v[k], where, f"{name}.{k}")
    return m


def read_per_utt(path: Path) -> tuple[list[str], list[UttCounts]]:
    """``per-utt-{set}.jsonl.gz`` of ``score-wer``: utterance ids and their counts."""
    verify_output(path)
    ids, utts = [], []
    names = list(UttCounts.__dataclass_fields__)
    for lineno, obj in read_jsonl(path):
        where = at(path, lineno, obj.get("id"))
        ids.append(get_str(obj, "id", where, nonempty=True))
        utts.append(UttCounts(**{k: get_int(obj, k, where, minimum=0) for k in names if k in obj}))
    return ids, utts


def read_sweep(path: Path, set_name: str) -> list[tuple[float, float, float]]:
    """``sweep-{set}.tsv`` of ``tune-rescoring``: (λ, β, WER) rows."""
    verify_output(path)
    rows = []
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if lineno == 1 or not line.strip():
                continue
            parts = line.rstrip("\r\n").split("\t")
            try:
                if len(parts) != 3:
                    raise ValueError
                lam, beta, wer = (float(x) for x in parts)
            except ValueError:
                raise InputError(
                    f"{path}:{lineno}: expected 'lm_scale<TAB>word_bonus<TAB>{set_name}_wer', "
                    f"got {line.rstrip()!r}"
                ) from None
            rows.append((lam, beta, wer))
    return rows


def _read_run(d: Path, name: str, sets: tuple[str, ...]) -> dict:
    """One run of a system (one seed of a seeded one): set -> entry, + tuned / loglinear."""
    out: dict = {}
    for s in sets:
        mp = d / f"metrics-{s}.json"
        if not mp.is_file():
            logging.warning("%s: not found: system %r is 'not run' on %s", mp, name, s)
            continue
        m = read_metrics(mp)
        ci = m.get("ci95") or {}
        entry = {k: {"value": m.get(k), "ci95": ci.get(k)} for k in METRICS}
        entry["rare_share"] = {"value": m.get("rare_share"), "ci95": None}
        entry["utterances"] = m.get("utterances")
        entry["per_intent"] = m.get("per_intent")
        if m.get("per_engine") is not None:
            entry["per_engine"] = m["per_engine"]
        entry["nlu_utterances"] = m.get("has_nlu")
        entry["slot_utterances"] = m.get("slot_utterances")
        if any(k in m for k in SLURP_METRICS):  # score-wer --slu-metrics slurp
            entry["slurp"] = {k: {"value": m.get(k), "ci95": ci.get(k)} for k in SLURP_METRICS}
        out[s] = entry
    lp = d / "loglinear.json"
    if lp.is_file() and out:  # a loglinear system (rescoring/loglinear.py)
        loglinear.read_params(lp)  # validated
        out["loglinear"] = read_json(lp)
    tp = d / "tuned.json"
    if tp.is_file() and out:
        verify_output(tp)
        read_tuned(tp)  # validated; the table shows the file as written
        out["tuned"] = read_json(tp)
    return out


def _mean_or_none(vals: list) -> float | None:
    return None if any(v is None for v in vals) else float(np.mean(vals))


def _group_seed_mean(tables: list[dict]) -> dict:
    """Per group (a gold intent, a TTS engine) of the seeds' tables: the utterance count and
    the seed means of WER and rare-word WER (None where a seed lacks the value); no interval."""
    return {
        g: {
            "utterances": tables[0][g]["utterances"],
            **{
                k: _mean_or_none([t.get(g, {}).get(k) for t in tables]) for k in ("wer", "rare_wer")
            },
        }
        for g in tables[0]
    }


def _seed_mean(runs: dict[int, dict], d: Path, sets: tuple[str, ...]) -> dict:
    """The entry of a seeded system: per set and metric the seed mean (``value``), its sample
    standard deviation (``sd``), the per-seed values (``seeds``) and an interval that resamples
    both seeds and utterances (``ci95``); ``tuned`` / ``loglinear`` per seed."""
    out: dict = {"lm_seeds": sorted(runs)}
    for s in sets:
        have = {k: r[s] for k, r in runs.items() if s in r}
        if len(have) < len(runs):
            missing = sorted(set(runs) - set(have))
            logging.warning("%s: seeds %s not scored on %s: the set is 'not run'", d, missing, s)
            continue
        per_utt = [read_per_utt(d / f"seed{k}" / f"per-utt-{s}.jsonl.gz") for k in sorted(have)]
        if any(ids != per_utt[0][0] for ids, _ in per_utt):
            raise InputError(f"{d}: the seeds of this system were scored on different utterances")
        counts = [u for _, u in per_utt]
        first = have[min(have)]
        entry = {k: first[k] for k in ("utterances", "nlu_utterances", "slot_utterances")}
        entry["per_intent"] = None  # as a run's entry without it; per_engine: absent
        for group in ("per_intent", "per_engine"):  # seed means, no interval
            if all(r.get(group) for r in have.values()):
                entry[group] = _group_seed_mean([r[group] for r in have.values()])
        for k in (*METRICS, "rare_share"):
            keys = [str(seed) for seed in sorted(have)]
            vals = [have[seed][k]["value"] for seed in sorted(have)]
            if any(v is None for v in vals):
                entry[k] = {
                    "value": None,
                    "ci95": None,
                    "sd": None,
                    "seeds": dict(zip(keys, vals, strict=True)),
                }
                continue
            ci = seed_bootstrap_ci(counts, k) if k in METRICS else None
            entry[k] = {
                "value": float(np.mean(vals)),
                "ci95": None if ci is None else list(ci),
                "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
                "seeds": dict(zip(keys, vals, strict=True)),
            }
        out[s] = entry
    for k in ("tuned", "loglinear"):
        if any(k in r for r in runs.values()):
            out[k + "_per_seed"] = {str(seed): r.get(k) for seed, r in sorted(runs.items())}
    return out


def collect(rescore_dir: Path, exps: Experiments) -> dict:
    """system -> set -> metric -> {"value", "ci95"} (+ "tuned": tuned.json as written).

    A seeded system (``{seed}`` in its LM paths) is read from ``<system>/seed<N>/`` for every
    seed of the matrix; its metrics also carry ``sd`` and ``seeds`` (:func:`_seed_mean`)."""
    results: dict = {}
    for name in exps.systems:
        d = rescore_dir / name
        if not d.is_dir():
            logging.warning("%s: no such folder: system %r is reported as 'not run'", d, name)
            continue
        if not exps.systems[name].seeded:
            run = _read_run(d, name, exps.sets)
            if run:
                results[name] = run
            continue
        runs = {seed: _read_run(d / f"seed{seed}", name, exps.sets) for seed in exps.seeds}
        if not all(runs.values()):
            missing = [k for k, r in runs.items() if not r]
            logging.warning(
                "%s: seeds %s not run: system %r is reported as 'not run'", d, missing, name
            )
            continue
        results[name] = _seed_mean(runs, d, exps.sets)
    return results


class PairedTests:
    """Paired bootstrap tests between systems on one set; each per-utt file is read once.

    Args:
        rescore_dir: the folder of the system folders.
        results: :func:`collect`'s output.
        set_name: the set the systems are compared on.
    """

    def __init__(self, rescore_dir: Path, results: dict, set_name: str):
        self.rescore_dir = rescore_dir
        self.results = results
        self.set_name = set_name
        self._per_utt: dict[str, tuple[Path, list[str], list[list[UttCounts]]] | None] = {}
        self._other_sets: dict[str, PairedTests] = {}

    def _counts(self, name: str) -> tuple[Path, list[str], list[list[UttCounts]]] | None:
        """The per-utterance counts of each seed of a system (one list for an unseeded one)."""
        if name not in self._per_utt:
            d = self.rescore_dir / name
            seeds = self.results.get(name, {}).get("lm_seeds")
            folders = [d] if seeds is None else [d / f"seed{k}" for k in seeds]
            paths = [f / f"per-utt-{self.set_name}.jsonl.gz" for f in folders]
            if not all(p.is_file() for p in paths):
                self._per_utt[name] = None
            else:
                read = [read_per_utt(p) for p in paths]
                self._per_utt[name] = (paths[0], read[0][0], [u for _, u in read])
        return self._per_utt[name]

    def test(self, a: str, b: str, metric: str) -> dict | None:
        """B against A on ``metric``; ``None`` when either was not scored on the set.

        Raises:
            InputError: the two systems were scored on different utterances.
        """
        s = self.set_name
        if s not in self.results.get(a, {}) or s not in self.results.get(b, {}):
            return None
        ca, cb = self._counts(a), self._counts(b)
        if ca is None or cb is None:
            return None
        (pa, ids_a, ua), (pb, ids_b, ub) = ca, cb
        if ids_a != ids_b:
            diff = sorted(set(ids_a) ^ set(ids_b))
            raise InputError(
                f"{pa} and {pb}: the systems were scored on different utterances "
                f"({len(ids_a)} vs {len(ids_b)}"
                + (f", e.g. {', '.join(diff[:5])} in only one" if diff else ", in another order")
                + "): a paired test needs the same ones; re-run score-wer on the same --gold"
            )
        va, vb = self.results[a][s][metric]["value"], self.results[b][s][metric]["value"]
        d = paired_bootstrap_diff_seeds(ua, ub, metric) or {}
        return {
            "a": a,
            "b": b,
            "set": s,
            "metric": metric,
            "a_value": va,
            "b_value": vb,
            "relative_change": None if not va or vb is None else 100 * (vb - va) / va,
            "diff_ci95": d.get("diff_ci95"),
            "p_b_better": d.get("p_b_better"),
        }

    def on(self, set_name: str) -> PairedTests:
        """The same systems' tests on ``set_name`` (this object for its own set; one object per
        other set, so each per-utt file is still read once)."""
        if set_name == self.set_name:
            return self
        if set_name not in self._other_sets:
            self._other_sets[set_name] = PairedTests(self.rescore_dir, self.results, set_name)
        return self._other_sets[set_name]

    def comparisons(self, exps: Experiments, metrics=("wer", "rare_wer")) -> list[dict]:
        """The matrix's comparisons, in order, each on ``metrics`` (pairs not run are left out)."""
        tests = (self.test(c.a, c.b, m) for c in exps.comparisons for m in metrics)
        return [t for t in tests if t is not None]
