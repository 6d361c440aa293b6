"""On-the-fly audio augmentation of training cuts (Lhotse's transforms) and fbank on the fly.

Training normally reads the fbank features ``compute-fbank`` stored with the cuts. When an
audio augmentation is on (:class:`AugmentSpec`, the ``--aug-*`` options of ``train-asr``), the
training batches are instead built from the cuts' audio (the cuts of ``compute-fbank`` keep
their recordings): each cut is transformed with Lhotse's lazy cut/recording transforms, its
audio loaded, and its fbank computed by Lhotse's ``Fbank`` with the settings of the stored
features (``kaldi-fbank``, their frame shift and sampling rate, ``FbankConfig`` defaults
otherwise, as ``compute-fbank`` uses them), so an utterance no augmentation touched gets the
stored features up to lilcom's quantisation (< 0.02, tested). With an SSL front-end the
audio itself is the batch (no fbank). Dev and decoding batches are never augmented.

Per utterance, in this order (each drawn independently):

1. speed (``--aug-speed``): one factor of the list, uniformly; ``cut.perturb_speed`` (Lhotse's
   ``Speed`` transform: resampling, so pitch and duration change; 1.0 = untouched). Tempo
   perturbation (``cut.perturb_tempo``) needs ``torchaudio.sox_effects``, which the installed
   torchaudio no longer has, so it is not offered.
2. reverberation (``--aug-reverb-prob``): ``cut.reverb_rir(rir)`` (Lhotse's
   ``ReverbWithImpulseResponse`` transform, output energy normalised, length kept) with one of
   ``--aug-reverb-rooms`` synthetic room impulse responses of Lhotse's
   ``FastRandomRIRGenerator`` (Luo et al. 2022, arXiv:2208.04101), generated once per process
   from ``--seed`` (:func:`rir_bank`): generating one costs ~15-30 ms, the convolution ~2 ms.
   ``--aug-reverb-rooms 0`` generates a new room per utterance (``cut.reverb_rir()`` without
   a RIR, seeded by our generator: Lhotse's transform draws the seeds from ``uuid4``).
3. additive noise (``--aug-noise-prob``, ``--aug-noise-types``, ``--aug-snr``): one type of
   the list, uniformly: ``white`` or ``pink`` (Gaussian noise generated for the utterance,
   pink by 1/f power shaping; Lhotse has no noise generator, and no noise corpus exists here)
   held as an in-memory ``Recording``, or ``babble``: another random training utterance (its
   transcript dropped), at a random offset, truncated to the utterance. Mixed with
   ``cut.mix(..., snr=...)`` (Lhotse's ``MixedCut``: the noise is scaled to the SNR drawn
   uniformly from the range, relative to the utterance's energy).
4. volume (``--aug-volume-prob``, ``--aug-volume-db``): a gain drawn uniformly in dB,
   ``cut.perturb_volume`` (Lhotse's ``Volume``).
5. narrowband (``--aug-narrowband-prob``): Lhotse's ``Narrowband`` transform with the ``mulaw``
   codec (resample to 8 kHz, G.711 mu-law encode/decode, resample back to the cut's rate) via
   ``cut.narrowband``; on a mixed cut the same transform is appended to its ``transforms``,
   applied after the mix, as Lhotse's ``reverb_rir`` does. The band above 4 kHz is emptied
   (Lhotse's resampler rolls off between 4 and 5 kHz; the energy above 5 kHz falls from -20 dB
   to below -50 dB of the total on the test utterances).

Randomness: one ``random.Random`` per batch, seeded from (``--seed``, epoch, the batch's cut
ids), and each cut's audio loaded under a forked torch RNG seeded from (``--seed``, epoch, cut
id) (the synthetic RIR draws from torch's global RNG; it also runs on one intra-op thread, as
its scatter is order-dependent across threads). The same batch of the same epoch is thus
augmented the same way whatever the number of DataLoader workers, a resumed run (the sampler
fast-forwarded to the same batch) sees the same augmentation as an uninterrupted one, and the
torch RNG stream of training (dropout, SpecAugment) is the one it would be without
augmentation.

Bad output: an augmented utterance whose audio or features are not finite is skipped (masked
out of its batch: zero-length label sequence, so the loss ignores it) with a warning naming the
cut and what was applied; ``train-asr`` counts the skips (``aug_skipped`` in the checkpoints).
An augmentation that raises stops training with an :class:`InputError` naming the cut and
the augmentations applied to it.

Usage:
    spec = AugmentSpec(speed=(0.9, 1.0, 1.1), noise_prob=0.5, snr=(10.0, 20.0))
    aug = AudioAugment(spec, seed=42, epoch=3, train_cuts=train_cuts)
    feats, lens, skipped = aug.features(batch_cuts, num_mel_bins=80)  # (N, T, 80), (N,), [i]
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from lhotse import CutSet, Fbank, FbankConfig, Recording
from lhotse.audio import save_audio
from lhotse.augmentation import Narrowband
from lhotse.augmentation.utils import FastRandomRIRGenerator
from lhotse.cut import Cut, MixedCut
from lhotse.dataset.collation import collate_matrices, collate_vectors
from lhotse.utils import LOG_EPSILON, compute_num_samples, fastcopy

from asr.config import NOISE_TYPES, TrainConfig
from common.io import InputError

#: what a reverberation with a room generated for the utterance is logged as
NEW_ROOM = "reverb (new room)"
#: synthetic RIR banks built in this process: (seed, sampling rate, size) -> RIR recordings
_RIR_BANKS: dict[tuple[int, int, int], list[Recording]] = {}
#: codec of Lhotse's ``Narrowband`` (``lpc10`` needs libspandsp, not installed here)
NARROWBAND_CODEC = "mulaw"


@dataclass(frozen=True)
class AugmentSpec:
    """Which audio augmentations run on training cuts, and their parameters (see module doc).

    Built from ``TrainConfig`` by :meth:`from_train_config` (``--aug-*``); validated there.
    """

    speed: tuple[float, ...] = ()
    volume_prob: float = 0.0
    volume_db: tuple[float, float] = (-6.0, 6.0)
    reverb_prob: float = 0.0
    reverb_rooms: int = 100
    noise_prob: float = 0.0
    noise_types: tuple[str, ...] = NOISE_TYPES
    snr: tuple[float, float] = (10.0, 20.0)
    narrowband_prob: float = 0.0

    @classmethod
    def from_train_config(cls, cfg: TrainConfig) -> AugmentSpec:
        """The spec of a :class:`asr.config.TrainConfig`; ``--speed-perturb`` is the shorthand
        of ``--aug-speed 0.9 1.0 1.1``."""
        speed = tuple(cfg.aug_speed) or ((0.9, 1.0, 1.1) if cfg.speed_perturb else ())
        return cls(
            speed=speed,
            volume_prob=cfg.aug_volume_prob,
            volume_db=tuple(cfg.aug_volume_db),
            reverb_prob=cfg.aug_reverb_prob,
            reverb_rooms=cfg.aug_reverb_rooms,
            noise_prob=cfg.aug_noise_prob,
            noise_types=tuple(cfg.aug_noise_types),
            snr=tuple(cfg.aug_snr),
            narrowband_prob=cfg.aug_narrowband_prob,
        )

    @property
    def active(self) -> bool:
        """Some augmentation can change a cut (otherwise the stored features are used)."""
        probs = (self.volume_prob, self.reverb_prob, self.noise_prob, self.narrowband_prob)
        return any(f != 1.0 for f in self.speed) or any(p > 0 for p in probs)

    def describe(self) -> str:
        """One line for the log: what is on, with its parameters."""
        on = []
        if any(f != 1.0 for f in self.speed):
            on.append("speed x" + "/".join(f"{f:g}" for f in self.speed))
        if self.reverb_prob > 0:
            rooms = f"{self.reverb_rooms} rooms" if self.reverb_rooms else "a new room each"
            on.append(f"reverb p={self.reverb_prob:g} (Lhotse synthetic RIR, {rooms})")
        if self.noise_prob > 0:
            lo, hi = self.snr
            on.append(
                f"noise p={self.noise_prob:g} {'/'.join(self.noise_types)} SNR {lo:g}..{hi:g} dB"
            )
        if self.volume_prob > 0:
            lo, hi = self.volume_db
            on.append(f"volume p={self.volume_prob:g} {lo:g}..{hi:g} dB")
        if self.narrowband_prob > 0:
            on.append(f"narrowband p={self.narrowband_prob:g} ({NARROWBAND_CODEC}, 8 kHz)")
        return "; ".join(on) if on else "none"


def fbank_extractor(cut: Cut, num_mel_bins: int) -> Fbank:
    """Lhotse's ``Fbank`` as ``compute-fbank`` configured it for ``cut``'s stored features:
    ``num_mel_bins`` filters (the model's ``feature_dim``), the features' frame shift and
    sampling rate, ``FbankConfig`` defaults otherwise.

    Raises:
        InputError: naming the cut if its stored features are not Lhotse's ``kaldi-fbank``
            (on-the-fly features would not match what the model was fed otherwise).
    """
    config = FbankConfig(num_filters=num_mel_bins, sampling_rate=cut.sampling_rate)
    if cut.has_features:
        if cut.features_type != Fbank.name:
            raise InputError(
                f"cut {cut.id}: stored features are {cut.features_type!r}, but on-the-fly "
                f"features (audio augmentation) are Lhotse's {Fbank.name!r} (compute-fbank)"
            )
        config.frame_shift = cut.frame_shift
    return Fbank(config)


def memory_recording(samples: np.ndarray, sampling_rate: int, recording_id: str) -> Recording:
    """1-D ``samples`` as an in-memory 16-bit WAV ``Recording``, scaled to peak 0.5 (what
    uses them rescales: ``cut.mix`` to the SNR, reverb to the input's energy)."""
    x = 0.5 * samples / max(float(np.abs(samples).max()), 1e-9)
    buf = io.BytesIO()
    save_audio(buf, torch.from_numpy(x.astype(np.float32))[None], sampling_rate, format="wav")
    return Recording.from_bytes(buf.getvalue(), recording_id=recording_id)


def rir_bank(seed: int, sampling_rate: int, size: int) -> list[Recording]:
    """``size`` room impulse responses of Lhotse's ``FastRandomRIRGenerator`` (random rooms
    and source distances, seeded by ``seed``), as in-memory recordings; built once per process
    (~15-30 ms each on one CPU thread, which is what a new room per utterance costs)."""
    key = (seed, sampling_rate, size)
    if key not in _RIR_BANKS:
        t0 = time.perf_counter()
        rng = random.Random(f"asr.augment.rooms:{seed}")
        bank = []
        for i in range(size):
            room, source, torch_seed = rng.getrandbits(31), rng.getrandbits(31), rng.getrandbits(63)
            with _reproducible_torch(torch_seed, single_thread=True):
                gen = FastRandomRIRGenerator(sr=sampling_rate, room_seed=room, source_seed=source)
                rir = gen(nsource=1)[0]  # (L,)
            bank.append(memory_recording(rir, sampling_rate, f"rir-{seed}-{i}"))
        _RIR_BANKS[key] = bank
        logging.info(
            "%d synthetic room impulse responses in %.1f s", size, time.perf_counter() - t0
        )
    return _RIR_BANKS[key]


def noise_recording(kind: str, num_samples: int, sampling_rate: int, seed: int) -> Recording:
    """``num_samples`` of Gaussian ``white`` or ``pink`` (1/f power) noise as an in-memory
    recording (:func:`memory_recording`)."""
    gen = np.random.default_rng(seed)
    x = gen.standard_normal(num_samples)
    if kind == "pink":
        spec = np.fft.rfft(x)
        f = np.arange(spec.shape[0], dtype=np.float64)
        f[0] = 1.0
        x = np.fft.irfft(spec / np.sqrt(f), n=num_samples)
    return memory_recording(x, sampling_rate, f"{kind}-noise-{seed}")


class AudioAugment:
    """Applies an :class:`AugmentSpec` to a batch of training cuts and loads the result as
    fbank features (:meth:`features`) or audio (:meth:`audio`).

    Args:
        spec: what to apply.
        seed: the training seed; with ``epoch`` and the batch's cut ids it seeds each batch.
        epoch: the training epoch.
        train_cuts: the training CutSet: ``babble`` is drawn from it (required when ``babble``
            is among ``spec.noise_types`` and ``spec.noise_prob > 0``), and the RIR bank is
            built now for its sampling rate, so DataLoader workers inherit it.
    """

    def __init__(
        self,
        spec: AugmentSpec,
        seed: int = 0,
        epoch: int = 0,
        train_cuts: CutSet | None = None,
    ) -> None:
        cuts = list(train_cuts) if train_cuts is not None else []
        babble = spec.noise_prob > 0 and "babble" in spec.noise_types
        if babble and len(cuts) < 2:
            raise InputError("babble noise needs a training CutSet of at least 2 cuts")
        self.spec, self.seed, self.epoch = spec, seed, epoch
        self.babble = cuts if babble else []  # pickled into each DataLoader worker
        if spec.reverb_prob > 0 and spec.reverb_rooms and cuts:
            rir_bank(seed, cuts[0].sampling_rate, spec.reverb_rooms)
        self._fbank: dict[tuple, Fbank] = {}

    def rng(self, cuts: list[Cut]) -> random.Random:
        """The batch's generator: a function of (seed, epoch, cut ids) only."""
        ids = "|".join(c.id for c in cuts)
        return random.Random(f"asr.augment:{self.seed}:{self.epoch}:{ids}")

    def transform(self, cuts: list[Cut]) -> list[tuple[Cut, list[str]]]:
        """Each cut's augmented copy (lazy: nothing is loaded yet) and what was applied to it.

        Cut and supervision ids are kept, and so is the transcript (a babble cut's is dropped).
        """
        rng = self.rng(cuts)
        return [self._one(cut, rng) for cut in cuts]

    def _one(self, cut: Cut, rng: random.Random) -> tuple[Cut, list[str]]:
        spec, done = self.spec, []
        out = cut.drop_features()  # Lhotse would detach them, warning once per cut
        if spec.speed:
            factor = rng.choice(spec.speed)
            if factor != 1.0:
                out = out.perturb_speed(factor, affix_id=False)
                done.append(f"speed x{factor:g}")
        if spec.reverb_prob > 0 and rng.random() < spec.reverb_prob:
            if spec.reverb_rooms:
                bank = rir_bank(self.seed, out.sampling_rate, spec.reverb_rooms)
                k = rng.randrange(len(bank))
                out = out.reverb_rir(bank[k], affix_id=False)
                done.append(f"reverb room {k}")
            else:
                room, source = rng.getrandbits(31), rng.getrandbits(31)
                out = out.reverb_rir(affix_id=False, room_rng_seed=room, source_rng_seed=source)
                done.append(NEW_ROOM)
        if spec.noise_prob > 0 and rng.random() < spec.noise_prob:
            kind = rng.choice(spec.noise_types)
            snr = rng.uniform(*spec.snr)
            noise, offset = self._noise(kind, out, rng)
            duration = out.duration
            out = out.mix(noise, offset_other_by=offset, snr=snr, preserve_id="left")
            if out.num_samples != compute_num_samples(duration, out.sampling_rate):
                out = out.truncate(duration=duration, preserve_id=True)  # float rounding
            done.append(f"{kind} noise {snr:.1f} dB SNR")
        if spec.volume_prob > 0 and rng.random() < spec.volume_prob:
            db = rng.uniform(*spec.volume_db)
            out = out.perturb_volume(10 ** (db / 20), affix_id=False)
            done.append(f"volume {db:+.1f} dB")
        if spec.narrowband_prob > 0 and rng.random() < spec.narrowband_prob:
            out = _narrowband(out)
            done.append("narrowband")
        return out, done

    def _noise(self, kind: str, cut: Cut, rng: random.Random) -> tuple[Cut, float]:
        """A noise cut to mix into ``cut`` and its offset in seconds: it ends within ``cut``
        and has no supervisions."""
        sr = cut.sampling_rate
        if kind != "babble":
            rec = noise_recording(kind, cut.num_samples, sr, rng.getrandbits(63))
            return rec.to_cut().truncate(duration=cut.duration, preserve_id=True), 0.0
        other = self.babble[rng.randrange(len(self.babble) - 1)]
        if other.id == cut.id:  # never the utterance itself: the last one stands in for it
            other = self.babble[-1]
        other = other.drop_features().drop_supervisions()  # its words are not the target
        if other.sampling_rate != sr:
            other = other.resample(sr)
        if other.duration >= cut.duration:
            start = math.floor(rng.uniform(0, other.duration - cut.duration) * sr) / sr
            return other.truncate(offset=start, duration=cut.duration, preserve_id=True), 0.0
        return other, math.floor(rng.uniform(0, cut.duration - other.duration) * sr) / sr

    def _load(self, cuts: list[Cut]) -> tuple[list[np.ndarray | None], list[list[str]]]:
        """Each augmented cut's audio (1, S), None where it is not finite (warned), and
        what was applied to each."""
        audios, applied = [], []
        for cut, (aug, done) in zip(cuts, self.transform(cuts), strict=True):
            try:
                with _reproducible_torch(self.rng([cut]).getrandbits(63), NEW_ROOM in done):
                    audio = aug.load_audio()
            except Exception as e:  # a failing Lhotse transform is a bug or bad audio: stop
                raise InputError(
                    f"cut {cut.id}: audio augmentation ({', '.join(done) or 'none'}) failed: "
                    f"{type(e).__name__}: {e}"
                ) from e
            if not np.isfinite(audio).all():
                _warn_skip(cut, done, "audio")
                audio = None
            audios.append(audio)
            applied.append(done)
        return audios, applied

    def audio(self, cuts: CutSet) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Augmented waveforms: ``(N, S)`` float, lengths ``(N,)`` in samples, indices of the
        skipped cuts (zeros of their un-augmented length)."""
        cuts = list(cuts)
        audios, _ = self._load(cuts)
        rows = [
            torch.from_numpy(a[0]) if a is not None else torch.zeros(c.num_samples)
            for a, c in zip(audios, cuts, strict=True)
        ]
        lens = torch.tensor([r.shape[0] for r in rows], dtype=torch.int64)
        skipped = [i for i, a in enumerate(audios) if a is None]
        return collate_vectors(rows, padding_value=0.0), lens, skipped

    def features(
        self, cuts: CutSet, num_mel_bins: int
    ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Fbank of the augmented audio: ``(N, T, num_mel_bins)`` padded with ``LOG_EPSILON``
        (as ``collate_features``), lengths ``(N,)`` in frames, indices of the skipped cuts
        (rows of ``LOG_EPSILON`` as long as their stored features)."""
        cuts = list(cuts)
        audios, applied = self._load(cuts)
        rows, skipped = [], []
        for i, (audio, cut) in enumerate(zip(audios, cuts, strict=True)):
            if audio is not None:
                fbank = self._extractor(cut, num_mel_bins)
                feats = torch.from_numpy(fbank.extract(audio, cut.sampling_rate))  # (T, C)
                if torch.isfinite(feats).all():
                    rows.append(feats)
                    continue
                _warn_skip(cut, applied[i], "features")
            skipped.append(i)
            frames = cut.num_frames if cut.has_features else 1
            rows.append(torch.full((frames, num_mel_bins), LOG_EPSILON))
        lens = torch.tensor([r.shape[0] for r in rows], dtype=torch.int64)
        return collate_matrices(rows, padding_value=LOG_EPSILON), lens, skipped

    def _extractor(self, cut: Cut, num_mel_bins: int) -> Fbank:
        key = (num_mel_bins, cut.frame_shift, cut.sampling_rate, cut.features_type)
        if key not in self._fbank:
            self._fbank[key] = fbank_extractor(cut, num_mel_bins)
        return self._fbank[key]


@contextlib.contextmanager
def _reproducible_torch(seed: int, single_thread: bool) -> Iterator[None]:
    """Lhotse's synthetic RIR draws from torch's global RNG (``multinomial``) and writes with
    repeated indices (``rir[idx] += ...``, order-dependent across intra-op threads): run it on
    a forked RNG seeded per cut (which leaves the training stream alone) and, for reverb, on
    one thread."""
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # torch.manual_seed also queues CUDA seeding
        if single_thread and threads > 1:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)


def _warn_skip(cut: Cut, done: list[str], what: str) -> None:
    utt = cut.supervisions[0].id if cut.supervisions else cut.id
    logging.warning(
        "cut %s%s: non-finite %s after audio augmentation (%s): utterance skipped",
        cut.id,
        f" (utterance {utt})" if utt != cut.id else "",
        what,
        ", ".join(done) or "none",
    )


def _narrowband(cut: Cut) -> Cut:
    """Lhotse's ``Narrowband`` on ``cut``; on a ``MixedCut`` (no ``narrowband`` method) the
    transform is appended to those applied after mixing."""
    if not isinstance(cut, MixedCut):
        return cut.narrowband(NARROWBAND_CODEC, restore_orig_sr=True, affix_id=False)
    nb = Narrowband(
        codec=NARROWBAND_CODEC, source_sampling_rate=cut.sampling_rate, restore_orig_sr=True
    )
    return fastcopy(cut, transforms=[*(cut.transforms or []), nb.to_dict()])
