"""On-the-fly audio augmentation (asr/augment.py): each transform does what it says on a tiny
cut, the default path is untouched, probability 0 reproduces the stored features, a seed
reproduces a batch, non-finite output is a counted skip, bad options name themselves, and the
tiny preset trains a couple of steps with everything on."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from asr.augment import AudioAugment, AugmentSpec, noise_recording
from asr.config import PRESETS, TrainConfig, get_train_preset
from asr.data import AsrDataset
from common.io import InputError

from .conftest import tiny_cfg


def _augment_one(cut, pool, **spec) -> tuple[np.ndarray, list[str]]:
    aug = AudioAugment(AugmentSpec(**spec), seed=1, train_cuts=pool)
    [(out, done)] = aug.transform([cut])
    return out.load_audio()[0], done


def _energy_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(x.astype(np.float64) ** 2))


def _frame_db(x: np.ndarray) -> np.ndarray:
    fr = x[: len(x) // 160 * 160].reshape(-1, 160).astype(np.float64)
    return 10 * np.log10(np.mean(fr**2, axis=1) + 1e-12)


def test_speed_changes_duration(cuts):
    cut = cuts[0]
    x = cut.load_audio()[0]
    y, done = _augment_one(cut, cuts, speed=(1.1,))
    assert done == ["speed x1.1"]
    assert abs(len(y) - len(x) / 1.1) <= 2
    y, done = _augment_one(cut, cuts, speed=(1.0,))  # 1.0 leaves the cut alone
    assert done == [] and np.array_equal(y, x)


def test_volume_scales_energy_by_the_gain(cuts):
    cut = cuts[1]
    x = cut.load_audio()[0]
    y, done = _augment_one(cut, cuts, volume_prob=1.0, volume_db=(-4.5, -4.5))
    assert done == ["volume -4.5 dB"]
    assert _energy_db(y) - _energy_db(x) == pytest.approx(-4.5, abs=0.01)


@pytest.mark.parametrize("rooms", [0, 3])  # 0: a new room per utterance
def test_reverb_smears_into_silence(cuts, rooms):
    cut = cuts[2]
    x = cut.load_audio()[0]
    y, done = _augment_one(cut, cuts, reverb_prob=1.0, reverb_rooms=rooms)
    assert (
        done == ["reverb (new room)"]
        if rooms == 0
        else done[0] in ("reverb room 0", "reverb room 1", "reverb room 2")
    )
    assert len(y) == len(x)  # Lhotse keeps the length (shift-output)
    ex, ey = _frame_db(x), _frame_db(y)
    quiet = ex < ex.max() - 40  # silence around the espeak utterance
    assert quiet.sum() >= 5
    assert ey[quiet].mean() > ex[quiet].mean() + 20  # the tail of the room fills it
    assert _energy_db(y) == pytest.approx(_energy_db(x), abs=0.1)  # normalised output


@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
def test_noise_at_the_target_snr(cuts, kind):
    from asr.data import cut_text

    cut = cuts[3]
    aug = AudioAugment(
        AugmentSpec(noise_prob=1.0, noise_types=(kind,), snr=(7.0, 7.0)), seed=1, train_cuts=cuts
    )
    [(mixed, done)] = aug.transform([cut])
    assert done == [f"{kind} noise 7.0 dB SNR"]
    assert cut_text(mixed) == cut_text(cut)  # a babble utterance brings no words
    x = cut.load_audio()[0].astype(np.float64)
    y = mixed.load_audio()[0].astype(np.float64)
    assert len(y) == len(x)
    # Lhotse's SNR: mean power of the utterance over that of the noise, over its own length
    # (a babble utterance shorter than the cut covers part of it only)
    n = mixed.tracks[1].cut.load_audio()[0].astype(np.float64)
    gain2 = np.sum((y - x) ** 2) / np.sum(n**2)
    snr = 10 * np.log10(np.mean(x**2) / (gain2 * np.mean(n**2)))
    assert snr == pytest.approx(7.0, abs=0.05)
    if kind != "babble":
        assert 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2)) == pytest.approx(7, abs=0.05)


def test_pink_noise_has_a_falling_spectrum():
    x = noise_recording("pink", 32000, 16000, seed=3).load_audio()[0].astype(np.float64)
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 16000)
    low, high = p[(f > 100) & (f < 200)].mean(), p[(f > 3200) & (f < 6400)].mean()
    assert 10 * np.log10(low / high) > 10  # 1/f: ~15 dB between these bands


def test_narrowband_removes_energy_above_4khz(cuts):
    cut = cuts[4]
    x = cut.load_audio()[0].astype(np.float64)
    y, done = _augment_one(cut, cuts, narrowband_prob=1.0)
    assert done == ["narrowband"] and len(y) == len(x)

    def above_4k(a):  # Hann-windowed power above 5 kHz (Lhotse's resampler rolls off 4-5 kHz)
        frames = a[: len(a) // 512 * 512].reshape(-1, 512) * np.hanning(512)
        p = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).sum(axis=0)
        return p[np.fft.rfftfreq(512, 1 / 16000) > 5000].sum() / p.sum()

    assert above_4k(x) > 1e-2 and above_4k(y) < 1e-5  # -20 dB -> below -50 dB
    # after a mix too (Lhotse's transform appended to the MixedCut's)
    y, done = _augment_one(cut, cuts, noise_prob=1.0, noise_types=("white",), narrowband_prob=1)
    assert done[-1] == "narrowband" and above_4k(y) < 1e-5


def test_default_path_is_untouched(cuts, tok):
    from lhotse.dataset.collation import collate_features

    for name in PRESETS:
        assert not AugmentSpec.from_train_config(get_train_preset(name)).active, name
    batch_cuts = cuts.subset(first=4)
    batch = AsrDataset(tok)[batch_cuts]
    feats, lens = collate_features(batch_cuts.sort_by_duration(ascending=False))
    assert torch.equal(batch["feats"], feats) and torch.equal(batch["feat_lens"], lens)
    assert "aug_skipped" not in batch


def test_probability_zero_reproduces_stored_features(cuts, tok):
    from lhotse.dataset.collation import collate_audio

    batch_cuts = cuts.subset(first=4)
    plain = AsrDataset(tok)[batch_cuts]
    idle = AugmentSpec(speed=(1.0,), noise_prob=0.0)  # on-the-fly, nothing fires
    fly = AsrDataset(tok, augment=AudioAugment(idle))[batch_cuts]
    assert fly["aug_skipped"] == [] and fly["ids"] == plain["ids"]
    assert torch.equal(fly["feat_lens"].long(), plain["feat_lens"].long())
    assert torch.equal(fly["targets"], plain["targets"])
    diff = (fly["feats"] - plain["feats"]).abs().max().item()
    assert diff < 0.02, diff  # lilcom's quantisation of the stored features
    # waveform batches (SSL front-end): the audio itself, exactly
    wav = AsrDataset(tok, waveform=True, augment=AudioAugment(idle))[batch_cuts]
    audio, audio_lens = collate_audio(batch_cuts.sort_by_duration(ascending=False))
    assert torch.equal(wav["feats"], audio) and torch.equal(wav["feat_lens"], audio_lens.long())


ALL_ON = AugmentSpec(
    speed=(0.9, 1.0, 1.1),
    reverb_prob=0.5,
    reverb_rooms=4,
    noise_prob=0.8,
    snr=(5.0, 15.0),
    volume_prob=0.5,
    narrowband_prob=0.5,
)


def test_same_seed_same_augmentation(cuts, tok):
    batch_cuts = cuts.subset(first=3)

    def batch(seed, epoch):
        aug = AudioAugment(ALL_ON, seed=seed, epoch=epoch, train_cuts=cuts)
        return AsrDataset(tok, augment=aug)[batch_cuts]

    a, b = batch(42, 3), batch(42, 3)
    assert torch.equal(a["feats"], b["feats"]) and torch.equal(a["feat_lens"], b["feat_lens"])
    new_rooms = AudioAugment(
        dataclasses.replace(ALL_ON, reverb_rooms=0), seed=42, epoch=3, train_cuts=cuts
    )
    first, again = (AsrDataset(tok, augment=new_rooms)[batch_cuts] for _ in range(2))
    assert torch.equal(first["feats"], again["feats"])
    c = batch(42, 4)
    assert c["feats"].shape != a["feats"].shape or not torch.equal(c["feats"], a["feats"])
    assert torch.isfinite(a["feats"]).all() and a["texts"] == c["texts"]
    # waveform batches get the same transforms (no fbank)
    aug = AudioAugment(ALL_ON, seed=42, epoch=3, train_cuts=cuts)
    wav = AsrDataset(tok, waveform=True, augment=aug)[batch_cuts]
    assert wav["feats"].dim() == 2 and torch.isfinite(wav["feats"]).all()


def test_non_finite_augmentation_is_a_counted_skip(cuts, tok, monkeypatch, caplog):
    from lhotse.augmentation.torchaudio import Volume

    real = Volume.__call__
    monkeypatch.setattr(
        Volume, "__call__", lambda self, s, sr: s * np.nan if self.factor > 1 else real(self, s, sr)
    )
    batch_cuts = cuts.subset(first=6)
    spec = AugmentSpec(volume_prob=1.0, volume_db=(-6.0, 6.0))
    aug = AudioAugment(spec, seed=5)
    order = list(batch_cuts.sort_by_duration(ascending=False))
    louder = {  # utterance (supervision) id -> cut id
        c.supervisions[0].id: c.id
        for c, (_, done) in zip(order, aug.transform(order), strict=True)
        if "+" in done[0]
    }
    assert 0 < len(louder) < 6
    with caplog.at_level(logging.WARNING):
        batch = AsrDataset(tok, augment=aug)[batch_cuts]
    assert set(batch["aug_skipped"]) == set(louder)
    for i, uid in enumerate(batch["ids"]):
        assert (batch["target_lens"][i] == 0) == (uid in louder)
    assert torch.isfinite(batch["feats"]).all()
    for uid, cid in louder.items():
        warning = f"cut {cid} (utterance {uid}): non-finite audio after audio augmentation"
        assert f"{warning} (volume +" in caplog.text


def test_failing_augmentation_names_the_cut(cuts, tok, monkeypatch):
    from lhotse.augmentation.torchaudio import Volume

    def boom(self, s, sr):
        raise RuntimeError("codec exploded")

    monkeypatch.setattr(Volume, "__call__", boom)
    aug = AudioAugment(AugmentSpec(volume_prob=1.0), seed=0)
    first = cuts.subset(first=1)
    with pytest.raises(InputError, match=rf"cut {first[0].id}: .*volume.*codec exploded"):
        AsrDataset(tok, augment=aug)[first]


@pytest.mark.parametrize(
    ("override", "option"),
    [
        ({"aug_noise_prob": 1.5}, "--aug-noise-prob"),
        ({"aug_reverb_prob": -0.1}, "--aug-reverb-prob"),
        ({"aug_reverb_rooms": -1}, "--aug-reverb-rooms"),
        ({"aug_volume_prob": 2.0}, "--aug-volume-prob"),
        ({"aug_narrowband_prob": float("nan")}, "--aug-narrowband-prob"),
        ({"aug_snr": (20.0, 10.0)}, "--aug-snr"),
        ({"aug_volume_db": (3.0,)}, "--aug-volume-db"),
        ({"aug_speed": (0.9, 0.1)}, "--aug-speed"),
        ({"aug_noise_types": ("white", "brown")}, "--aug-noise-types"),
        ({"aug_speed": (0.9, 1.1), "speed_perturb": True}, "--speed-perturb"),
    ],
)
def test_bad_options_name_themselves(override, option):
    cfg = dataclasses.replace(TrainConfig(), **override)
    with pytest.raises(InputError, match=option):
        cfg.validate()


def test_command_line_options_reach_the_config(capsys):
    from asr.train import CLI, main

    _, cfg = CLI.configs(
        ["--preset", "tiny", "--aug-speed", "0.9", "1.0", "1.1", "--aug-snr", "5", "15"]
    )
    spec = AugmentSpec.from_train_config(cfg)
    assert spec.speed == (0.9, 1.0, 1.1) and spec.snr == (5.0, 15.0) and spec.active
    with pytest.raises(SystemExit) as e:
        main(["--preset", "tiny", "--aug-reverb-prob", "2"])
    assert e.value.code == 2
    assert "--aug-reverb-prob must be in [0, 1]" in capsys.readouterr().err


def test_tiny_preset_trains_with_every_augmentation(asr_data, tmp_path, caplog):
    import json

    from asr.train import run
    from common.checkpoint import load_checkpoint

    model_cfg, cfg = tiny_cfg(
        asr_data,
        tmp_path,
        num_epochs=1,
        max_steps=2,
        spec_augment=True,
        spec_aug_from_epoch=1,
        aug_speed=(0.9, 1.0, 1.1),
        aug_reverb_prob=0.5,
        aug_reverb_rooms=4,
        aug_noise_prob=0.5,
        aug_volume_prob=0.5,
        aug_narrowband_prob=0.5,
    )
    with caplog.at_level(logging.INFO):
        last = run(0, 1, model_cfg, cfg)
    assert "audio augmentation of train batches: speed x0.9/1/1.1; reverb p=0.5" in caplog.text
    ckpt = load_checkpoint(last)
    assert ckpt["step"] == 2 and ckpt["aug_skipped"] == 0
    saved = json.loads((tmp_path / "config.json").read_text())["config"]
    assert saved["aug_speed"] == [0.9, 1.0, 1.1] and saved["aug_noise_prob"] == 0.5


def test_augmentation_starts_at_aug_from_epoch(asr_data, tmp_path, caplog):
    """Before --aug-from-epoch the epochs are those of a run without augmentation (the same
    weights, bit for bit); from it on, the augmented batches change the training."""
    from asr.train import run
    from common.checkpoint import load_checkpoint

    weights = {}
    for name, kw in (
        ("plain", {}),
        ("late", {"aug_noise_prob": 1.0, "aug_noise_types": ("white",), "aug_from_epoch": 2}),
    ):
        model_cfg, cfg = tiny_cfg(asr_data, tmp_path / name, num_epochs=2, **kw)
        with caplog.at_level(logging.INFO):
            run(0, 1, model_cfg, cfg)
        weights[name] = [load_checkpoint(tmp_path / name / f"epoch-{e}.pt") for e in (1, 2)]
    assert "audio augmentation of train batches from epoch 2: noise p=1 white" in caplog.text
    assert "epoch 2: audio augmentation of train batches starts" in caplog.text
    for e, same in ((0, True), (1, False)):
        a, b = weights["plain"][e]["model"], weights["late"][e]["model"]
        assert all(torch.equal(a[k], b[k]) for k in a) is same


def test_aug_from_epoch_must_be_positive():
    cfg = dataclasses.replace(TrainConfig(), aug_from_epoch=0)
    with pytest.raises(InputError, match="--aug-from-epoch must be >= 1, got 0"):
        cfg.validate()
