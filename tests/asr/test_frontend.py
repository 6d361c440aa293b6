"""SSL front-ends (wav2vec 2.0 / HuBERT): torchaudio state dicts load exactly (also into fewer
layers, also with legacy weight-norm keys), foreign files are clear errors, the RNN-T trains on
waveforms through them (frozen: their weights never move), and decode-asr rebuilds them."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import torch
import torchaudio

from asr.config import ModelConfig, TrainConfig
from asr.frontend import SSLFrontend, ssl_frames
from common.io import CheckpointError, InputError

from .conftest import tiny_cfg


def _wav(n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(n, 8000, generator=g), torch.tensor([8000, 6400][:n])


def test_base_state_dict_loads_and_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    ref = torchaudio.models.wav2vec2_base().eval()
    path = tmp_path / "w2v2_base.pt"
    torch.save(ref.state_dict(), path)
    ours = SSLFrontend("wav2vec2_base", out_dim=16, stack=2, num_layers=0, freeze=True)
    ours.load_pretrained(path)
    wav, lens = _wav()
    with torch.no_grad():
        want, want_lens = ref(wav, lens)
        got, got_lens = ours.eval().ssl(wav, lens)
    assert torch.equal(got, want) and torch.equal(got_lens, want_lens)
    x, x_lens = ours(wav, lens)  # stacked pairs of 20 ms frames, projected
    assert x.shape == (2, want.shape[1] // 2, 16) and x_lens.tolist() == (want_lens // 2).tolist()
    assert x_lens.tolist() == [ssl_frames(8000, 2), ssl_frames(6400, 2)]


def test_fewer_layers_and_legacy_weight_norm_keys(tmp_path):
    torch.manual_seed(1)
    ref = torchaudio.models.hubert_base().eval()
    state = {}
    for k, v in ref.state_dict().items():  # as torch < 2.1 saved weight-normed convolutions
        k = k.replace("parametrizations.weight.original0", "weight_g")
        state[k.replace("parametrizations.weight.original1", "weight_v")] = v
    state["aux.weight"] = torch.zeros(32, 768)  # an ASR head of a fine-tuned bundle
    path = tmp_path / "hubert_legacy.pt"
    torch.save(state, path)
    ours = SSLFrontend("hubert_base", out_dim=8, stack=2, num_layers=2, freeze=True)
    ours.load_pretrained(path)
    wav, lens = _wav()
    with torch.no_grad():
        layers, _ = ref.extract_features(wav, lens, num_layers=2)
        got, _ = ours.eval().ssl(wav, lens)
    assert torch.equal(got, layers[-1])


def test_foreign_state_dicts_name_the_file(tmp_path):
    ours = SSLFrontend("wav2vec2_base", out_dim=8, stack=2, num_layers=1, freeze=True)
    other = tmp_path / "lm.pt"
    torch.save({"embed.weight": torch.zeros(3, 4), "out.bias": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match=rf"{other}: not a wav2vec2_base state dict"):
        ours.load_pretrained(other)
    small = torchaudio.models.wav2vec2_model(
        **{
            **dict(extractor_mode="group_norm", extractor_conv_layer_config=None),
            **dict(extractor_conv_bias=False, encoder_embed_dim=64, encoder_projection_dropout=0),
            **dict(encoder_pos_conv_kernel=128, encoder_pos_conv_groups=16, encoder_num_layers=1),
            **dict(encoder_num_heads=4, encoder_attention_dropout=0, encoder_ff_interm_features=32),
            **dict(encoder_ff_interm_dropout=0, encoder_dropout=0, encoder_layer_norm_first=False),
            **dict(encoder_layer_drop=0, aux_num_out=None),
        }
    )
    shapes = tmp_path / "small.pt"
    torch.save(small.state_dict(), shapes)
    with pytest.raises(CheckpointError, match=rf"{shapes}: weight .* has shape .*another model"):
        ours.load_pretrained(shapes)
    toolkit = tmp_path / "epoch-1.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "epoch": 1}, toolkit)
    with pytest.raises(CheckpointError, match=rf"{toolkit}: not a state dict"):
        ours.load_pretrained(toolkit)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match=rf"{garbage}: cannot load"):
        ours.load_pretrained(garbage)
    with pytest.raises(CheckpointError, match="nope.pt: SSL front-end checkpoint not found"):
        ours.load_pretrained(tmp_path / "nope.pt")


def _ssl_model_cfg(freeze: bool = True, frontend: str = "wav2vec2_base") -> ModelConfig:
    from asr.config import get_model_preset

    return dataclasses.replace(
        get_model_preset("tiny"), frontend=frontend, frontend_layers=1, frontend_freeze=freeze
    )


@pytest.fixture(scope="module")
def few_cuts(asr_data, tmp_path_factory) -> Path:
    """Four of the fixture's cuts (an SSL forward pass is ~100x an fbank one on a CPU)."""
    from asr.data import load_cuts

    path = tmp_path_factory.mktemp("few") / "cuts.jsonl.gz"
    load_cuts(asr_data["cuts"]).subset(first=4).to_file(path)
    return path


@pytest.mark.parametrize("freeze", [True, False])
def test_rnnt_forward_backward_on_waveforms(asr_data, few_cuts, freeze):
    from asr.data import AsrDataset, Tokenizer, encoder_frames, load_cuts
    from asr.model import build_model
    from asr.objective import TransducerForward, compute_loss

    tok = Tokenizer(asr_data["bpe_model"])
    model_cfg = dataclasses.replace(_ssl_model_cfg(freeze), vocab_size=tok.vocab_size)
    torch.manual_seed(0)
    model = build_model(model_cfg).train()
    cuts = load_cuts(few_cuts).subset(first=2)
    batch = AsrDataset(tok, waveform=True)[cuts]
    assert batch["feats"].dim() == 2  # (N, S) samples
    assert batch["feat_lens"].tolist() == sorted((c.num_samples for c in cuts), reverse=True)
    _, enc_lens, _ = TransducerForward(model)(
        batch["feats"], batch["feat_lens"], batch["targets"], batch["target_lens"]
    )
    by_id = {c.supervisions[0].id: c for c in cuts}
    assert enc_lens.tolist() == [encoder_frames(by_id[i], model_cfg) for i in batch["ids"]]
    train_cfg = TrainConfig(spec_augment=False)
    loss, st = compute_loss(TransducerForward(model), batch, train_cfg, torch.device("cpu"))
    assert torch.isfinite(loss) and st["utts"] == 2
    loss.backward()
    ssl = model.ssl_frontend
    assert ssl is not None and ssl.proj.weight.grad is not None
    ssl_grads = [p.grad for p in ssl.ssl.parameters()]
    if freeze:
        assert all(g is None for g in ssl_grads) and not ssl.ssl.training
    else:
        assert any(g is not None and g.abs().sum() > 0 for g in ssl_grads) and ssl.ssl.training


def _ssl_weights(state: dict) -> dict[str, torch.Tensor]:
    prefix = "transcriber.ssl_frontend.ssl."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def frontend_file(tmp_path_factory) -> Path:
    """A 1-layer wav2vec2_base-architecture state dict (random), as torchaudio saves it."""
    torch.manual_seed(3)
    f = SSLFrontend("wav2vec2_base", out_dim=8, stack=2, num_layers=1, freeze=True)
    path = tmp_path_factory.mktemp("ssl") / "w2v2.pt"
    torch.save(f.ssl.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def trained_frozen(asr_data, few_cuts, frontend_file, tmp_path_factory) -> Path:
    from asr.train import run

    exp = tmp_path_factory.mktemp("exp_ssl_frozen")
    _, cfg = tiny_cfg(asr_data, exp, num_epochs=1, spec_augment=False, valid_wer_cuts=2)
    cfg = dataclasses.replace(
        cfg, train_cuts=few_cuts, dev_cuts=few_cuts, frontend_checkpoint=frontend_file
    )
    run(0, 1, _ssl_model_cfg(freeze=True), cfg)
    return exp


def test_frozen_frontend_is_unchanged_by_training(trained_frozen, frontend_file):
    from common.checkpoint import load_checkpoint

    ckpt = load_checkpoint(trained_frozen / "epoch-1.pt")
    assert ckpt["step"] >= 1
    start = torch.load(frontend_file, weights_only=True)
    got = _ssl_weights(ckpt["model"])
    assert got.keys() == start.keys()
    assert all(torch.equal(got[k], start[k]) for k in start)
    # the optimizer holds only what trains: no state for the frozen front-end
    from asr.model import build_model

    model = build_model(ModelConfig(**ckpt["config"]["model"]))
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) < len(list(model.parameters()))
    assert len(ckpt["optimizer"]["param_groups"][0]["params"]) == len(trainable)
    assert ckpt["config"]["model"]["frontend"] == "wav2vec2_base"


def test_fine_tuned_frontend_moves(asr_data, few_cuts, frontend_file, tmp_path, caplog):
    from asr.train import run
    from common.checkpoint import load_checkpoint

    _, cfg = tiny_cfg(asr_data, tmp_path, num_epochs=1, max_steps=1, spec_augment=False)
    cfg = dataclasses.replace(
        cfg, train_cuts=few_cuts, dev_cuts=few_cuts, frontend_checkpoint=frontend_file
    )
    run(0, 1, _ssl_model_cfg(freeze=False), cfg)
    got = _ssl_weights(load_checkpoint(tmp_path / "epoch-1.pt")["model"])
    start = torch.load(frontend_file, weights_only=True)
    assert not all(torch.equal(got[k], start[k]) for k in start)


def test_decode_rebuilds_the_ssl_frontend(trained_frozen, asr_data, few_cuts, tmp_path):
    from asr.decode import DecodeConfig, load_transducer, run

    model, _ = load_transducer(trained_frozen / "epoch-1.pt")
    assert model.ssl_frontend is not None and model.ssl_frontend.num_layers == 1
    cfg = DecodeConfig(
        exp_dir=trained_frozen,
        checkpoint=trained_frozen / "epoch-1.pt",
        bpe_model=asr_data["bpe_model"],
        cuts=[few_cuts],
        method="modified_beam",
        beam=2,
        nbest=2,
        out_dir=tmp_path / "dec",
    )
    (summary,) = run(cfg)
    assert summary["utterances"] == 4 and (tmp_path / "dec" / "nbest-cuts.jsonl.gz").is_file()
    # cuts without audio cannot feed a waveform model: a clear error naming the file
    from asr.data import load_cuts

    no_audio = tmp_path / "noaudio_cuts_dev.jsonl.gz"
    load_cuts(few_cuts).drop_recordings().to_file(no_audio)
    with pytest.raises(InputError, match=rf"{no_audio}: cut .* has no recording"):
        run(dataclasses.replace(cfg, cuts=[no_audio], out_dir=tmp_path / "dec2"))


def test_untrained_frontend_warns(caplog):
    from asr.model import build_model
    from asr.train import init_frontend

    model = build_model(dataclasses.replace(_ssl_model_cfg(frontend="hubert_base"), vocab_size=8))
    with caplog.at_level(logging.WARNING):
        init_frontend(model, TrainConfig())
    assert "hubert_base front-end is randomly initialised, i.e. UNTRAINED" in caplog.text


def test_frontend_options(tmp_path):
    from asr.train import CLI, check_frontend_options

    model_cfg, train_cfg = CLI.configs(["--frontend", "hubert_base"])
    assert model_cfg.frontend == "hubert_base" and not train_cfg.spec_augment
    check_frontend_options(model_cfg, train_cfg)
    model_cfg, train_cfg = CLI.configs(["--frontend", "hubert_base", "--spec-augment", "true"])
    with pytest.raises(InputError, match="--spec-augment masks fbank features"):
        check_frontend_options(model_cfg, train_cfg)
    model_cfg, train_cfg = CLI.configs(["--frontend-checkpoint", str(tmp_path / "x.pt")])
    assert model_cfg.frontend == "fbank" and train_cfg.spec_augment  # fbank: as before
    with pytest.raises(InputError, match="--frontend-checkpoint needs an SSL --frontend"):
        check_frontend_options(model_cfg, train_cfg)
    model_cfg, train_cfg = CLI.configs(
        ["--frontend", "wav2vec2_base", "--frontend-checkpoint", str(tmp_path / "x.pt")]
    )
    with pytest.raises(InputError, match=r"x\.pt: no such file"):
        check_frontend_options(model_cfg, train_cfg)
    with pytest.raises(InputError, match="--frontend must be one of"):
        ModelConfig(frontend="mfcc").validate()
    with pytest.raises(InputError, match="--frontend-layers"):
        ModelConfig(frontend="hubert_base", frontend_layers=13).validate()


def test_set_name_keeps_underscored_split_names():
    from asr.decode import set_name

    assert set_name(Path("data/fbank/snips_cuts_test_unseen_engine.jsonl.gz")) == (
        "test_unseen_engine"
    )
    assert set_name(Path("data/fbank/snips_cuts_dev.jsonl.gz")) == "dev"
    assert set_name(Path("x/cuts.jsonl.gz")) == "cuts"
    assert set_name(Path("x/my_dev.jsonl.gz")) == "dev"
