"""Speed perturbation from stored features (asr.data.CutCopies, train-asr --speed-cuts):
copies are matched to their train cuts, each epoch draws the original or a copy per utterance
(uniformly, reproducibly per (seed, epoch, cut id), whatever else is drawn), the drawn copy's
stored features equal what on-the-fly --aug-speed computes (up to lilcom), bad copy files name
file and cut, and the tiny preset trains on the drawn cuts."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter

import pytest
import torch
from lhotse import CutSet
from lhotse.dataset.collation import collate_features

from asr.augment import AudioAugment, AugmentSpec
from asr.config import TrainConfig, get_model_preset
from asr.data import AsrDataset, CutCopies, load_cuts
from common.io import InputError

from .conftest import tiny_cfg

FACTORS = (0.9, 1.1)  # the copies of the copy_paths fixture (conftest)


def _load(copy_paths, cuts, tok):
    return CutCopies.load(copy_paths, cuts, tok, get_model_preset("tiny"))


def test_copies_match_their_train_cuts(copy_paths, cuts, tok):
    sc = _load(copy_paths, cuts, tok)
    assert sorted(sc.copies) == sorted(c.id for c in cuts.subset(first=12))
    for orig, copies in sc.copies.items():
        assert sorted(c.id for c in copies) == [f"{orig}_sp{f}" for f in FACTORS]


def test_each_utterance_draws_the_original_or_a_copy_uniformly_and_reproducibly(
    copy_paths, cuts, tok
):
    sc = _load(copy_paths, cuts, tok)
    batch = cuts.subset(first=16)  # the last 4 have no copies
    drawn = Counter()
    for epoch in range(60):
        picked = list(sc.choose(batch, 7, epoch))
        again = list(sc.choose(batch, 7, epoch))
        assert [c.id for c in picked] == [c.id for c in again]  # (seed, epoch, ids) fix it
        assert len(picked) == 16
        for c, orig in zip(picked, batch, strict=True):
            assert c.id.split("_sp")[0] == orig.id  # same utterance, same position
            drawn[c.id[len(orig.id) :] or "x1"] += orig.id in sc.copies
        assert [c.id for c in picked[12:]] == [c.id for c in list(batch)[12:]]
    # 12 utterances x 60 epochs, three options each: about 240 per option
    assert set(drawn) == {"x1", "_sp0.9", "_sp1.1"}
    assert all(180 < n < 300 for n in drawn.values()), drawn
    # a cut's draw does not depend on the other cuts drawn with it
    alone = [c.id for c in sc.choose(batch.subset(last=5), 7, 3)]
    assert alone == [c.id for c in sc.choose(batch, 7, 3)][-5:]
    other_seed = [c.id for c in sc.choose(batch, 8, 0)]
    other_epoch = [c.id for c in sc.choose(batch, 7, 1)]
    first = [c.id for c in sc.choose(batch, 7, 0)]
    assert first != other_seed or first != other_epoch


def test_a_drawn_copy_reads_its_stored_features_equal_to_on_the_fly_speed(copy_paths, cuts, tok):
    sc = _load(copy_paths, cuts, tok)
    batch_cuts = cuts.subset(first=4)
    # every utterance's x0.9 copy, as a batch draw would give it
    only_slow = CutCopies(
        {k: [c for c in v if c.id.endswith("_sp0.9")] for k, v in sc.copies.items()}
    )
    picked = CutSet.from_cuts(next(iter(only_slow.copies[c.id])) for c in batch_cuts)
    stored = AsrDataset(tok)[picked]
    feats, lens = collate_features(picked.sort_by_duration(ascending=False))
    assert torch.equal(stored["feats"], feats) and torch.equal(stored["feat_lens"], lens)
    assert stored["texts"] == AsrDataset(tok)[batch_cuts]["texts"]
    # on the fly: --aug-speed with the one factor 0.9 resamples the same audio the same way
    fly = AsrDataset(tok, augment=AudioAugment(AugmentSpec(speed=(0.9,))))[batch_cuts]
    assert torch.equal(fly["feat_lens"].long(), stored["feat_lens"].long())
    diff = (fly["feats"] - stored["feats"]).abs().max().item()
    assert diff < 0.02, diff  # lilcom's quantisation of the stored features


def test_bad_copy_files_name_file_and_cut(copy_paths, cuts, tok, asr_data, tmp_path, caplog):
    with pytest.raises(
        InputError, match=r"cuts\.jsonl\.gz: cut utt00-0 is not one of the speed-perturbed copies"
    ):
        _load((asr_data["cuts"],), cuts, tok)
    with pytest.raises(InputError, match=r"cuts_sp0\.9\.jsonl\.gz: cut utt00-0_sp0\.9 given twice"):
        _load((copy_paths[0], copy_paths[0]), cuts, tok)
    # copies of another train set: nothing matches
    with pytest.raises(InputError, match=r"cuts_sp1\.1\.jsonl\.gz: none of its 12 cuts is a copy"):
        _load(copy_paths[1:], cuts.subset(last=8), tok)
    # copies of cuts left out of the train set: counted, logged
    with caplog.at_level(logging.INFO):
        sc = _load(copy_paths, cuts.subset(first=5), tok)
    assert sorted(sc.copies) == sorted(c.id for c in cuts.subset(first=5))
    assert "7 copies of cuts not in the train set skipped" in caplog.text
    missing = tmp_path / "nope.jsonl.gz"
    with pytest.raises(InputError, match="nope.jsonl.gz: CutSet not found"):
        _load((missing,), cuts, tok)


def test_speed_cuts_and_on_the_fly_speed_are_exclusive(copy_paths):
    for kw in ({"aug_speed": (0.9, 1.0, 1.1)}, {"speed_perturb": True}):
        with pytest.raises(InputError, match="--speed-cuts .* give one of them"):
            dataclasses.replace(TrainConfig(), speed_cuts=copy_paths, **kw).validate()


def test_tiny_preset_trains_on_the_drawn_cuts(asr_data, copy_paths, tmp_path, caplog, monkeypatch):
    import asr.train
    from asr.train import run
    from common.checkpoint import load_checkpoint

    given = []  # the train cuts each loader is made of (the dev ones are never drawn)
    make_dataloader = asr.train.make_dataloader

    def spy(cuts, *args, **kw):
        given.append((kw.get("shuffle"), [c.id for c in cuts]))
        return make_dataloader(cuts, *args, **kw)

    monkeypatch.setattr(asr.train, "make_dataloader", spy)

    model_cfg, cfg = tiny_cfg(asr_data, tmp_path, num_epochs=1, max_steps=2, speed_cuts=copy_paths)
    with caplog.at_level(logging.INFO):
        last = run(0, 1, model_cfg, cfg)
    assert "12 speed-perturbed copies (x0.9) of train cuts" in caplog.text
    assert "audio augmentation of train batches: none" in caplog.text  # stored features only
    assert load_checkpoint(last)["step"] == 2
    [train_ids] = [ids for shuffle, ids in given if shuffle]
    assert len(train_ids) == 20 and any("_sp" in i for i in train_ids)
    assert sorted(i.split("_sp")[0] for i in train_ids) == sorted(
        c.id for c in load_cuts(asr_data["cuts"])
    )
    assert all("_sp" not in i for shuffle, ids in given if not shuffle for i in ids)


def _as_rendering(cut, k=2):
    """``cut`` (utterance u, cut id ``u-<n>[_sp<f>]``) as rendering ``k`` of u would be stored:
    cut id ``u_r<k>-<n>[_sp<f>]`` (Lhotse's, from its recording), supervision
    ``u_r<k>[_sp<f>]``."""
    sup = cut.supervisions[0]
    utt = sup.id.split("_sp")[0]
    sup_id = sup.id.replace(utt, f"{utt}_r{k}", 1)
    cut_id = cut.id.replace(utt, f"{utt}_r{k}", 1)
    return dataclasses.replace(
        cut, id=cut_id, supervisions=[dataclasses.replace(sup, id=sup_id, recording_id=cut_id)]
    )


@pytest.fixture(scope="module")
def render_paths(copy_paths, cuts, tmp_path_factory):
    """Renderings as train-asr --render-cuts reads them: rendering 2 of the first 8 utterances
    (here their own features) and the x0.9 copies of the first 4 of those."""
    root = tmp_path_factory.mktemp("renders")
    renders = CutSet.from_cuts(_as_rendering(c) for c in cuts.subset(first=8))
    slow = CutSet.from_cuts(  # the x0.9 copies are of the first 12 cuts, in order
        _as_rendering(c) for c in load_cuts(copy_paths[0]).subset(first=4)
    )
    paths = (root / "cuts_train_renders.jsonl.gz", root / "cuts_train_renders_sp0.9.jsonl.gz")
    renders.to_file(paths[0])
    slow.to_file(paths[1])
    return paths


def test_renderings_join_the_speed_copies_of_their_utterance(copy_paths, render_paths, cuts, tok):
    """--render-cuts: the cuts of utterances ``<u>_r<k>`` and ``<u>_r<k>_sp<f>`` are copies of
    the cut of ``<u>``, drawn with its speed copies, uniformly per (seed, epoch, cut id)."""
    tiny = get_model_preset("tiny")
    sc = CutCopies.load(copy_paths, cuts, tok, tiny, render_paths=render_paths)
    first = [c.id for c in cuts.subset(first=12)]
    assert sorted(sc.copies) == sorted(first)
    for i, orig in enumerate(first):  # cut ids <utterance>-<n>
        utt, n = orig.rsplit("-", 1)
        want = [f"{orig}_sp0.9", f"{orig}_sp1.1"]
        want += [f"{utt}_r2-{n}"] if i < 8 else []
        want += [f"{utt}_r2-{n}_sp0.9"] if i < 4 else []
        assert sorted(c.id for c in sc.copies[orig]) == sorted(want)
    # renderings alone (no speed copies) are copies too
    only = CutCopies.load((), cuts, tok, tiny, render_paths=render_paths[:1])
    assert sorted(only.copies) == sorted(first[:8])
    batch = cuts.subset(first=4)  # 5 options each: original, 2 speeds, rendering, its x0.9
    drawn = Counter()
    for epoch in range(100):
        for c, orig in zip(sc.choose(batch, 3, epoch), batch, strict=True):
            utt = orig.supervisions[0].id
            assert c.supervisions[0].id.startswith(utt)
            drawn[c.supervisions[0].id[len(utt) :] or "x1"] += 1
    assert set(drawn) == {"x1", "_sp0.9", "_sp1.1", "_r2", "_r2_sp0.9"}
    assert all(50 < n < 110 for n in drawn.values()), drawn  # 80 each expected


def test_bad_render_files_name_file_and_cut(copy_paths, render_paths, cuts, tok, caplog):
    tiny = get_model_preset("tiny")
    with pytest.raises(InputError, match=r"cuts_sp0\.9\.jsonl\.gz: cut utt00-0_sp0\.9 is not one "):
        CutCopies.load((), cuts, tok, tiny, render_paths=copy_paths[:1])
    with pytest.raises(InputError, match=r"cut utt00_r2-\d+ given twice"):
        CutCopies.load((), cuts, tok, tiny, render_paths=render_paths[:1] * 2)
    with caplog.at_level(logging.INFO):
        CutCopies.load((), cuts, tok, tiny, render_paths=render_paths)
    assert "8 renderings (r2) of train cuts" in caplog.text
    assert "4 renderings (r2x0.9) of train cuts" in caplog.text
