"""TTS plans: the spec and TOML parsers (good and bad plans, clear errors), disjoint voices
across splits, deterministic assignment, the voices of further renderings (another engine
first), and prepare-snips with a plan, an unseen-engine set and --train-renders."""

from __future__ import annotations

import re
import shutil

import pytest
from lhotse import load_manifest

from data_prep.tts import TTSBackend, TTSError, sample_voice, split_voices
from data_prep.tts_plan import (
    PlanError,
    PlanItem,
    load_tts_plan,
    parse_tts_plan,
    resolve_tts_plan,
    sample_plan_voice,
    sample_render_voice,
)


class ListedVoices(TTSBackend):
    """A backend that only lists voices (the plan never synthesizes)."""

    def __init__(self, name: str, voices: list[str]) -> None:
        self.name, self._voices = name, voices

    def voices(self) -> list[str]:
        return sorted(self._voices)

    def synthesize(self, text, voice, out_path):  # pragma: no cover - never called
        raise AssertionError


BACKENDS = {
    "espeak-ng": ListedVoices("espeak-ng", [f"en+v{i:02d}" for i in range(40)]),
    "flite": ListedVoices("flite", ["awb", "kal", "kal16", "rms", "slt"]),
    "festival": ListedVoices("festival", ["cmu_us_slt_arctic_hts", "kal_diphone", "ked_diphone"]),
}


def test_spec_parses_items_per_split():
    plan = parse_tts_plan(
        " train = espeak-ng , flite:awb,flite:rms ; dev=espeak-ng,flite:slt;"
        "test=espeak-ng,festival;test_unseen_engine=festival:kal_diphone;"
    )
    assert list(plan.splits) == ["train", "dev", "test", "test_unseen_engine"]
    assert plan.splits["train"] == (
        PlanItem("espeak-ng"),
        PlanItem("flite", "awb"),
        PlanItem("flite", "rms"),
    )
    assert plan.engines == ["espeak-ng", "festival", "flite"]
    assert parse_tts_plan(plan.to_spec()).splits == plan.splits


def test_toml_plan_equals_spec(tmp_path):
    f = tmp_path / "plan.toml"
    f.write_text(
        'test = "festival"\ntrain = ["espeak-ng", "flite:awb"]\ndev = ["espeak-ng", "flite:slt"]\n'
    )
    plan = load_tts_plan(str(f))
    spec = load_tts_plan("train=espeak-ng,flite:awb;dev=espeak-ng,flite:slt;test=festival")
    assert plan.splits == spec.splits and list(plan.splits) == ["train", "dev", "test"]


@pytest.mark.parametrize(
    "spec, msg",
    [
        ("", "empty plan"),
        ("train", r"'train' is not split=engine\[:voice\]"),
        ("=flite", r"'=flite' is not split="),
        ("train=flite;dev=flite", "no voices for split 'test'"),
        ("train=flite;dev=flite;test=flite;eval=flite", "unknown split 'eval'"),
        ("train=flite;train=espeak-ng;dev=flite;test=flite", "split 'train' given twice"),
        ("train=;dev=flite;test=flite", "split train: no voices"),
        ("train=rhvoice;dev=flite;test=flite", "split train: unknown TTS engine 'rhvoice'"),
        ("train=flite:;dev=flite;test=flite", "'flite:' has ':' but no voice"),
        ("train=:awb;dev=flite;test=flite", "':awb' names no engine"),
        ("train=flite:awb,flite:awb;dev=flite;test=flite", "split train: flite:awb named twice"),
        ("train=flite:awb;dev=flite:awb;test=flite", "split dev: voice flite:awb also renders"),
        ("train=flite,flite:awb;dev=espeak-ng;test=flite", "flite:awb is named beside flite"),
        (
            "train=espeak-ng;dev=flite;test=espeak-ng;test_unseen_engine=flite:slt",
            "test_unseen_engine: engine flite also renders train or dev",
        ),
    ],
)
def test_bad_specs_are_clear_errors(spec, msg):
    with pytest.raises(PlanError, match=msg) as e:
        parse_tts_plan(spec)
    assert "--tts-plan" in str(e.value)


@pytest.mark.parametrize(
    "text, msg",
    [
        ("train = [", "not valid TOML"),
        ("train = 3\ndev = 'flite'\ntest = 'flite'", "split train: expected a list"),
        ("train = 'flite'\ndev = 'flite'", "no voices for split 'test'"),
    ],
)
def test_bad_toml_names_file(text, msg, tmp_path):
    f = tmp_path / "plan.toml"
    f.write_text(text)
    with pytest.raises(PlanError, match=rf"{f}: .*{msg}"):
        load_tts_plan(str(f))
    with pytest.raises(PlanError, match="nope.toml: TTS plan file not found"):
        load_tts_plan(str(tmp_path / "nope.toml"))


def _all_voices(sets):
    return [f"{e}:{v}" for s in sets.values() for e, vs in s.items() for v in vs]


def test_voices_are_disjoint_across_splits():
    plan = parse_tts_plan(
        "train=espeak-ng,flite:awb,flite:rms;dev=espeak-ng,flite;test=espeak-ng,flite,festival;"
        "test_unseen_engine=festival"
    )
    sets = resolve_tts_plan(plan, BACKENDS, seed=13)
    keys = _all_voices(sets)
    assert len(keys) == len(set(keys))  # no voice renders two splits
    assert sets["train"]["flite"] == ["awb", "rms"]
    # flite alone in dev and test: the three voices not named elsewhere, dealt out
    assert sorted(sets["dev"]["flite"] + sets["test"]["flite"]) == ["kal", "kal16", "slt"]
    assert len(sets["dev"]["espeak-ng"]) == len(sets["test"]["espeak-ng"]) == 4  # 10% of 40
    assert len(sets["train"]["espeak-ng"]) == 32
    assert set(sets["test_unseen_engine"]) == {"festival"}
    assert len(sets["test"]["festival"]) + len(sets["test_unseen_engine"]["festival"]) == 3


def test_engine_in_every_split_equals_split_voices():
    plan = parse_tts_plan("train=espeak-ng;dev=espeak-ng;test=espeak-ng")
    sets = resolve_tts_plan(plan, BACKENDS, seed=7)
    train, dev, test = split_voices(BACKENDS["espeak-ng"].voices(), 7)
    assert sets == {
        "train": {"espeak-ng": train},
        "dev": {"espeak-ng": dev},
        "test": {"espeak-ng": test},
    }
    # one engine: the same voice, rate and pitch as without a plan
    for uid in ("a", "b", "snips-train-12"):
        v = sample_plan_voice(sets["train"], uid, 7)
        assert v == sample_voice(train, uid, 7)
        assert v.engine == "espeak-ng"


def test_assignment_is_deterministic_per_seed():
    plan = parse_tts_plan("train=espeak-ng,flite,festival;dev=espeak-ng;test=espeak-ng")
    a = resolve_tts_plan(plan, BACKENDS, seed=13)
    assert a == resolve_tts_plan(plan, BACKENDS, seed=13)
    assert a != resolve_tts_plan(plan, BACKENDS, seed=14)
    ids = [f"u{i}" for i in range(300)]
    draws = [sample_plan_voice(a["train"], u, 13) for u in ids]
    assert draws == [sample_plan_voice(a["train"], u, 13) for u in ids]
    assert draws != [sample_plan_voice(a["train"], u, 14) for u in ids]
    counts = {e: sum(v.engine == e for v in draws) for e in ("espeak-ng", "flite", "festival")}
    assert all(70 < n < 130 for n in counts.values()), counts  # engines uniform, not voices
    assert all(v.name in a["train"][v.engine] for v in draws)


def test_unknown_voice_and_too_few_voices():
    plan = parse_tts_plan("train=flite:nope;dev=flite;test=flite")
    with pytest.raises(TTSError, match="TTS engine flite has no voice 'nope'"):
        resolve_tts_plan(plan, BACKENDS, seed=1)
    plan = parse_tts_plan(
        "train=festival:kal_diphone;dev=festival;test=festival;test_unseen_engine=espeak-ng"
    )
    resolve_tts_plan(plan, BACKENDS, seed=1)  # two voices left for dev and test: one each
    plan = parse_tts_plan(
        "train=festival;dev=festival;test=festival,flite:awb;test_unseen_engine=espeak-ng:en+v00"
    )
    sets = resolve_tts_plan(plan, BACKENDS, seed=1)
    assert all(len(sets[s]["festival"]) == 1 for s in ("train", "dev", "test"))
    plan = parse_tts_plan(
        "train=festival:kal_diphone,festival:ked_diphone;dev=festival;test=festival"
    )
    with pytest.raises(PlanError, match="festival has 1 voice.*none left for test"):
        resolve_tts_plan(plan, BACKENDS, seed=1)


def test_prepare_snips_with_plan_and_unseen_engine(tmp_path, mini_snips_dir):
    if shutil.which("flite") is None or shutil.which("espeak-ng") is None:
        pytest.skip("flite or espeak-ng not installed (make system-deps installs them)")
    from data_prep.snips import PrepareSnipsConfig, prepare_snips

    cfg = PrepareSnipsConfig(
        corpus_dir=mini_snips_dir,
        output_dir=tmp_path / "m",
        audio_dir=tmp_path / "audio",
        max_per_split=2,
        num_jobs=1,
        tts_plan="train=espeak-ng;dev=espeak-ng;test=espeak-ng;"
        "test_unseen_engine=flite:slt,flite:kal16",
    )
    prepare_snips(cfg)
    m = cfg.output_dir
    test = load_manifest(m / "snips_nlu_test.jsonl.gz")
    unseen = load_manifest(m / "snips_nlu_test_unseen_engine.jsonl.gz")
    recs = load_manifest(m / "snips_recordings_test_unseen_engine.jsonl.gz")
    assert [s.id for s in unseen] == [f"{s.id}-unseen" for s in test]
    assert sorted(r.id for r in recs) == sorted(s.id for s in unseen)
    for s, t in zip(unseen, test, strict=True):
        assert s.custom["source_id"] == t.id
        assert (s.text, s.custom["intent"], s.custom["slots"]) == (
            t.text,
            t.custom["intent"],
            t.custom["slots"],
        )
        assert s.custom["tts_engine"] == "flite" and s.custom["tts_voice"] in ("slt", "kal16")
        assert t.custom["tts_engine"] == "espeak-ng"
    for split in ("train", "dev", "test", "test_unseen_engine"):
        for s in load_manifest(m / f"snips_supervisions_{split}.jsonl.gz"):
            rec = load_manifest(m / f"snips_recordings_{split}.jsonl.gz")[s.recording_id]
            wav = rec.sources[0].source
            assert wav.endswith(f".{s.custom['tts_engine']}.{s.custom['tts_voice']}.wav")
    assert (m / "snips_tts_voices.json").is_file()
    # resumable: a re-run renders nothing and writes the same manifests
    before = {p.name: p.read_bytes() for p in m.glob("*.jsonl.gz")}
    mtimes = {p: p.stat().st_mtime_ns for p in cfg.audio_dir.rglob("*.wav")}
    prepare_snips(cfg)
    assert {p.name: p.read_bytes() for p in m.glob("*.jsonl.gz")} == before
    assert {p: p.stat().st_mtime_ns for p in cfg.audio_dir.rglob("*.wav")} == mtimes


def test_prepare_snips_without_plan_records_no_tts_fields(tmp_path, mini_snips_dir):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    from data_prep.snips import PrepareSnipsConfig, prepare_snips

    cfg = PrepareSnipsConfig(
        corpus_dir=mini_snips_dir,
        output_dir=tmp_path / "m",
        audio_dir=tmp_path / "audio",
        max_per_split=1,
        num_jobs=1,
    )
    prepare_snips(cfg)
    sup = next(iter(load_manifest(cfg.output_dir / "snips_supervisions_test.jsonl.gz")))
    assert set(sup.custom) == {"intent", "slots"}
    assert not (cfg.output_dir / "snips_tts_voices.json").exists()
    assert sorted(p.name for p in (cfg.audio_dir / "test").iterdir()) == [f"{sup.id}.wav"]


def test_tts_backend_and_plan_are_exclusive(tmp_path, mini_snips_dir):
    from common.io import InputError
    from data_prep.snips import PrepareSnipsConfig, prepare_snips

    cfg = PrepareSnipsConfig(
        corpus_dir=mini_snips_dir,
        output_dir=tmp_path / "m",
        tts_backend="flite",
        tts_plan="train=flite;dev=flite;test=flite",
    )
    with pytest.raises(InputError, match="--tts-backend flite and --tts-plan"):
        prepare_snips(cfg)


def test_render_voices_take_the_next_engine_then_a_seeded_voice():
    sets = resolve_tts_plan(
        parse_tts_plan("train=espeak-ng,flite:awb,flite:rms;dev=espeak-ng;test=espeak-ng"),
        BACKENDS,
        seed=13,
    )
    train = sets["train"]
    engines = sorted(train)
    seen = set()
    for i in range(60):
        uid = f"snips-train-{i}"
        first = sample_plan_voice(train, uid, 13)
        second = sample_render_voice(train, uid, 2, 13)
        third = sample_render_voice(train, uid, 3, 13)
        assert second.engine != first.engine  # two engines: each speaks the sentence once
        assert third.engine == first.engine  # and the third rendering wraps around
        assert second.name in train[second.engine] and third.name in train[third.engine]
        assert second == sample_render_voice(train, uid, 2, 13)  # a function of (seed, id, k)
        seen.add((second.engine, second.name, second.rate, second.pitch))
        assert engines.index(second.engine) == (engines.index(first.engine) + 1) % 2
    assert len({e for e, *_ in seen}) == 2 and len(seen) > 30
    # one engine: another voice draw of the same engine
    one = {"espeak-ng": train["espeak-ng"]}
    assert {sample_render_voice(one, f"u{i}", 2, 13).engine for i in range(10)} == {"espeak-ng"}
    with pytest.raises(ValueError, match="rendering 1"):
        sample_render_voice(train, "u", 1, 13)


def test_prepare_snips_train_renders(tmp_path, mini_snips_dir):
    """--train-renders 2: every ASR train utterance once more, by the other engine, as the
    split train_renders (ids <id>_r2, same text and labels, custom source_id); the other
    splits are those of --train-renders 1, byte for byte; back to 1 removes the renders."""
    if shutil.which("flite") is None or shutil.which("espeak-ng") is None:
        pytest.skip("flite or espeak-ng not installed (make system-deps installs them)")
    import dataclasses

    from common.io import InputError
    from data_prep.snips import PrepareSnipsConfig, prepare_snips

    base = PrepareSnipsConfig(
        corpus_dir=mini_snips_dir,
        output_dir=tmp_path / "one",
        audio_dir=tmp_path / "audio",
        max_per_split=4,
        asr_train_subset=3,
        render_nlu_only=False,
        num_jobs=1,
        tts_plan="train=espeak-ng,flite:awb;dev=espeak-ng;test=espeak-ng",
    )
    prepare_snips(base)
    cfg = dataclasses.replace(base, output_dir=tmp_path / "two", train_renders=2)
    prepare_snips(cfg)
    m = cfg.output_dir
    train = load_manifest(m / "snips_supervisions_train.jsonl.gz")
    renders = load_manifest(m / "snips_supervisions_train_renders.jsonl.gz")
    recs = load_manifest(m / "snips_recordings_train_renders.jsonl.gz")
    assert len(train) == 3
    assert sorted(s.id for s in renders) == sorted(f"{s.id}_r2" for s in train)
    assert sorted(r.id for r in recs) == sorted(s.id for s in renders)
    for s in train:
        r = renders[f"{s.id}_r2"]
        assert r.custom["source_id"] == s.id
        assert (r.text, r.custom["intent"], r.custom["slots"]) == (
            s.text,
            s.custom["intent"],
            s.custom["slots"],
        )
        assert r.custom["tts_engine"] != s.custom["tts_engine"]
        assert (
            recs[r.id]
            .sources[0]
            .source.endswith(f"{r.id}.{r.custom['tts_engine']}.{r.custom['tts_voice']}.wav")
        )
    assert not (m / "snips_nlu_train_renders.jsonl.gz").exists()  # the NLU set is train's
    one = {p.name: p.read_bytes() for p in base.output_dir.glob("*.jsonl.gz")}
    two = {p.name: p.read_bytes() for p in m.glob("*.jsonl.gz") if "renders" not in p.name}
    assert one == two
    # back to one rendering: the renders of the earlier run are not left behind
    prepare_snips(dataclasses.replace(cfg, train_renders=1))
    assert not list(m.glob("*train_renders*"))
    with pytest.raises(InputError, match="--train-renders must be >= 1, got 0"):
        prepare_snips(dataclasses.replace(cfg, train_renders=0))


def test_engine_weights_parse_round_trip_and_bias_the_draw(tmp_path):
    spec = "train=espeak-ng*3,flite:awb,flite:rms;dev=espeak-ng,flite:slt;test=espeak-ng,flite:kal"
    plan = parse_tts_plan(spec)
    assert plan.weights("train") == {"espeak-ng": 3.0, "flite": 1.0}
    assert plan.weights("dev") == {"espeak-ng": 1.0, "flite": 1.0}
    assert parse_tts_plan(plan.to_spec()).to_spec() == plan.to_spec() == spec
    assert PlanItem("espeak-ng", None, 3.0) == PlanItem("espeak-ng")  # weight is not identity
    toml = tmp_path / "plan.toml"
    toml.write_text(
        'train = ["espeak-ng*3", "flite:awb", "flite:rms"]\ndev = ["espeak-ng", "flite:slt"]\n'
        'test = ["espeak-ng", "flite:kal"]\n'
    )
    assert load_tts_plan(str(toml)).to_spec() == spec
    # a weight on one voice item weighs the engine; the same weight twice is allowed
    again = parse_tts_plan("train=espeak-ng,flite:awb*2,flite:rms*2;dev=espeak-ng;test=espeak-ng")
    assert again.weights("train") == {"espeak-ng": 1.0, "flite": 2.0}

    sets = resolve_tts_plan(plan, BACKENDS, seed=13)
    assert sets["train"].weights == {"espeak-ng": 3.0, "flite": 1.0}
    ids = [f"u{i}" for i in range(2000)]
    draws = [sample_plan_voice(sets["train"], u, 13) for u in ids]
    share = sum(v.engine == "espeak-ng" for v in draws) / len(draws)
    assert 0.71 < share < 0.79, share  # 3 : 1 (seeded, so the same share on every run)
    assert all(v.name in sets["train"][v.engine] for v in draws)
    # equal weights draw exactly what a plan without weights draws
    plain = resolve_tts_plan(parse_tts_plan(spec.replace("*3", "")), BACKENDS, seed=13)
    equal = resolve_tts_plan(
        parse_tts_plan(spec.replace("*3", "*2").replace("flite:awb", "flite:awb*2")),
        BACKENDS,
        seed=13,
    )
    assert equal["train"] == plain["train"] and equal["train"].weights != plain["train"].weights
    assert [sample_plan_voice(equal["train"], u, 13) for u in ids[:300]] == [
        sample_plan_voice(plain["train"], u, 13) for u in ids[:300]
    ]


@pytest.mark.parametrize(
    ("spec", "msg"),
    [
        ("train=espeak-ng*0;dev=flite;test=festival", "item 'espeak-ng*0': weight '0' is not"),
        ("train=espeak-ng*-1;dev=flite;test=festival", "weight '-1' is not a number > 0"),
        ("train=espeak-ng*x;dev=flite;test=festival", "weight 'x' is not a number > 0"),
        ("train=espeak-ng*inf;dev=flite;test=festival", "weight 'inf' is not a number > 0"),
        ("train=espeak-ng*;dev=flite;test=festival", "weight '' is not a number > 0"),
        (
            "train=espeak-ng,flite:awb*2,flite:rms*3;dev=espeak-ng;test=espeak-ng",
            "split train: engine flite has weights 2, 3; give it one",
        ),
    ],
)
def test_bad_weights_are_clear_errors(spec, msg):
    with pytest.raises(PlanError, match=re.escape(msg)):
        parse_tts_plan(spec)
