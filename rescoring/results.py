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

from common.io import InputError, open_text, read_jsonl
from rescoring import loglinear
from rescoring.experiments import Experiments
from rescoring.fields import at, check_number, get_int, get_str, is_number, shown
from rescoring.metrics import METRICS, UttCounts, paired_bootstrap_diff
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


def collect(rescore_dir: Path, exps: Experiments) -> dict:
    """system -> set -> metric -> {"value", "ci95"} (+ "tuned": tuned.json as written)."""
    results: dict = {}
    for name in exps.systems:
        d = rescore_dir / name
        if not d.is_dir():
            logging.warning("%s: no such folder: system %r is reported as 'not run'", d, name)
            continue
        for s in exps.sets:
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
            entry["nlu_utterances"] = m.get("has_nlu")
            entry["slot_utterances"] = m.get("slot_utterances")
            if any(k in m for k in SLURP_METRICS):  # score-wer --slu-metrics slurp
                entry["slurp"] = {k: {"value": m.get(k), "ci95": ci.get(k)} for k in SLURP_METRICS}
            results.setdefault(name, {})[s] = entry
        lp = d / "loglinear.json"
        if lp.is_file() and name in results:  # a loglinear system (rescoring/loglinear.py)
            loglinear.read_params(lp)  # validated
            results[name]["loglinear"] = read_json(lp)
        tp = d / "tuned.json"
        if tp.is_file() and name in results:
            verify_output(tp)
            read_tuned(tp)  # validated; the table shows the file as written
            results[name]["tuned"] = read_json(tp)
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
        self._per_utt: dict[str, tuple[Path, list[str], list[UttCounts]] | None] = {}

    def _counts(self, name: str) -> tuple[Path, list[str], list[UttCounts]] | None:
        if name not in self._per_utt:
            p = self.rescore_dir / name / f"per-utt-{self.set_name}.jsonl.gz"
            self._per_utt[name] = (p, *read_per_utt(p)) if p.is_file() else None
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
        d = paired_bootstrap_diff(ua, ub, metric) or {}
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

    def comparisons(self, exps: Experiments, metrics=("wer", "rare_wer")) -> list[dict]:
        """The matrix's comparisons, in order, each on ``metrics`` (pairs not run are left out)."""
        tests = (self.test(c.a, c.b, m) for c in exps.comparisons for m in metrics)
        return [t for t in tests if t is not None]
