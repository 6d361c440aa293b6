"""LM shallow fusion in modified beam search (``asr.fusion``), ``train-token-lm`` and
``decode-asr --fusion-lm``: scales 0 are the unfused search bit for bit; the fusion score is
the scaled LM (and internal-LM) log-probability of the tokens; a fusion LM provably changes the
n-best; bad input stops with one line naming the file."""

from __future__ import annotations

import json
import math

import pytest
import torch

from asr import decode, train_token_lm
from asr.context_graph import ContextGraph
from asr.fusion import SOS_ID, ShallowFusion, TokenLM, TokenLMConfig, load_token_lm
from asr.search import ModifiedBeamSearch
from common.checkpoint import CheckpointError
from tests.asr.conftest import SENTENCES
from tests.asr.faults import assert_user_error, run_main, write_asr_checkpoint
from tests.asr.test_biasing import FrameModel, _args, _nbest, random_model  # noqa: F401


@pytest.fixture(scope="module")
def fused_setup(random_model):  # noqa: F811 (the fixture imported from test_biasing)
    """test_biasing's random tiny RNN-T and inputs, and a random tiny token LM."""
    torch.manual_seed(1)
    return (*random_model, TokenLM(TokenLMConfig(embed_dim=16, hidden_dim=24), 40).eval())


def _rows(nbests, fusion=False):
    return [
        [
            (h.tokens, h.score, h.context_score, h.length_score)
            + ((h.fusion_score,) if fusion else ())
            for h in nb
        ]
        for nb in nbests
    ]


SEARCHES = [
    {"beam": 1},
    {"beam": 4, "max_sym_per_frame": 2},
    {"beam": 8, "max_sym_per_frame": 2, "length_bonus": 0.5, "score_beam": 4.0},
    {"beam": 8, "max_sym_per_frame": 3, "merge_pieces": [f"p{i % 7}" for i in range(40)]},
]


@pytest.mark.parametrize("opts", SEARCHES)
def test_zero_scales_are_the_unfused_search_bit_for_bit(fused_setup, opts):
    model, feats, lens, lm = fused_setup
    plain = ModifiedBeamSearch(**opts)(model, feats, lens)
    fused = ModifiedBeamSearch(**opts, fusion=ShallowFusion(lm, 0.0, 0.0))(model, feats, lens)
    assert _rows(fused) == _rows(plain)
    assert all(h.fusion_score == 0.0 for nb in fused for h in nb)


def test_zero_scales_with_biasing(fused_setup):
    model, feats, lens, lm = fused_setup
    plain = ModifiedBeamSearch(4)(model, feats, lens)
    phrases = [list(h.tokens[:3]) for nb in plain for h in nb if h.tokens]
    graph = ContextGraph(1.0).build(phrases)
    contexts = [graph, None, graph]
    biased = ModifiedBeamSearch(4)(model, feats, lens, contexts=contexts)
    both = ModifiedBeamSearch(4, fusion=ShallowFusion(lm, 0.0, 0.0))(
        model, feats, lens, contexts=contexts
    )
    assert _rows(both) == _rows(biased)


def _lm_logprob(lm: TokenLM, tokens) -> float:
    """log P_LM(tokens) without the end of sentence, one token at a time."""
    with torch.no_grad():
        state = lm.initial_state(1)
        logp, state = lm.step(torch.tensor([SOS_ID]), state)
        total = 0.0
        for t in tokens:
            total += float(logp[0, t])
            logp, state = lm.step(torch.tensor([t]), state)
    return total


def _ilm_logprob(model, tokens) -> float:
    """log P_ILM(tokens): the joiner on the predictor output alone, blank left out."""
    with torch.no_grad():
        one = torch.ones(1, dtype=torch.long)
        hist = [model.blank_id]
        total = 0.0
        for t in tokens:
            pred, _, _ = model.predict(torch.tensor([hist]), torch.tensor([len(hist)]), None)
            p = pred[:, -1:]
            logits, _, _ = model.join(torch.zeros_like(p), one, p, one)
            logp = logits[0, 0, 0, 1:].log_softmax(-1)
            total += float(logp[t - 1])
            hist.append(t)
    return total


@pytest.mark.parametrize("lm_scale, ilm_scale", [(0.5, 0.0), (0.0, 0.3), (0.4, 0.2)])
def test_fusion_score_is_the_scaled_lm_and_ilm_logprob(fused_setup, lm_scale, ilm_scale):
    model, feats, lens, lm = fused_setup
    search = ModifiedBeamSearch(
        4, max_sym_per_frame=2, fusion=ShallowFusion(lm, lm_scale, ilm_scale)
    )
    nbests = search(model, feats, lens)
    checked = 0
    for nb in nbests:
        assert nb == sorted(nb, key=lambda h: -h.total)
        for h in nb[:3]:
            want = lm_scale * _lm_logprob(lm, h.tokens) - ilm_scale * _ilm_logprob(model, h.tokens)
            assert h.fusion_score == pytest.approx(want, abs=1e-3)
            checked += bool(h.tokens)
    assert checked


def test_batched_fused_search_equals_one_at_a_time(fused_setup):
    model, feats, lens, lm = fused_setup
    search = ModifiedBeamSearch(4, max_sym_per_frame=2, fusion=ShallowFusion(lm, 0.5, 0.1))
    batched = search(model, feats, lens)
    single = [search(model, feats[i : i + 1, : int(lens[i])], lens[i : i + 1])[0] for i in range(3)]
    for b, s in zip(batched, single, strict=True):
        assert [h.tokens for h in b] == [h.tokens for h in s]
        for x, y in zip(b, s, strict=True):
            assert x.score == pytest.approx(y.score, abs=1e-3)
            assert x.fusion_score == pytest.approx(y.fusion_score, abs=1e-3)


class PhraseLM:
    """A fusion LM that knows one phrase: after ``<sos>`` and each prefix of ``phrase`` the next
    phrase token has probability 0.97 (the 0.03 left spread evenly); off the phrase, uniform.
    State: one row per hypothesis, the number of phrase tokens matched (-1: off the phrase)."""

    def __init__(self, phrase: list[int], vocab: int) -> None:
        self.phrase, self.vocab = phrase, vocab

    def initial_state(self, n, device="cpu"):
        return [torch.full((n, 1), -2.0)]

    def step(self, tokens, state):
        k_old = state[0][:, 0].tolist()
        rows, ks = [], []
        for tok, k in zip(tokens.tolist(), k_old, strict=True):
            if k == -2 and tok == SOS_ID:
                k = 0
            elif 0 <= k < len(self.phrase) and tok == self.phrase[int(k)]:
                k += 1
            else:
                k = -1
            p = torch.full((self.vocab,), 1.0 / self.vocab)
            if 0 <= k < len(self.phrase):
                p = torch.full((self.vocab,), 0.03 / (self.vocab - 1))
                p[self.phrase[int(k)]] = 0.97
            rows.append(p.log())
            ks.append(k)
        return torch.stack(rows), [torch.tensor(ks, dtype=torch.float32)[:, None]]


class TokenFrameModel(FrameModel):
    """FrameModel with token-heavy frames (blank = 0): frame 0: blank 0.1, token 3: 0.5, token 4:
    0.4; frame 1: blank 0.1, token 3: 0.55, token 5: 0.35.

    One symbol per frame, beam 2, unfused: frame 0 keeps (3,) and (4,); frame 1 keeps (3, 3)
    (0.275) and (4, 3) (0.22); (4, 5) (0.14) is out. Fused with an LM that puts 0.97 on 4 then
    5 (0.006 on every other token) at scale 1: frame 0 keeps (4,) (0.4 x 0.97) and () (0.1),
    (3,) has 0.5 x 0.006; frame 1 keeps (4, 5) (0.4 x 0.35 x 0.97^2) and (4,) (0.388 x 0.1)."""

    def __init__(self) -> None:
        probs = torch.full((2, 6), 1e-12)
        probs[0, [0, 3, 4]] = torch.tensor([0.1, 0.5, 0.4])
        probs[1, [0, 3, 5]] = torch.tensor([0.1, 0.55, 0.35])
        self.frames = probs.log()


def test_fusion_provably_changes_the_nbest():
    model = TokenFrameModel()
    feats, lens = torch.zeros(1, 2, 1), torch.tensor([2])
    (plain,) = ModifiedBeamSearch(beam=2)(model, feats, lens)
    assert [h.tokens for h in plain] == [(3, 3), (4, 3)]
    fusion = ShallowFusion(PhraseLM([4, 5], 6), lm_scale=1.0)
    (fused,) = ModifiedBeamSearch(beam=2, fusion=fusion)(model, feats, lens)
    assert [h.tokens for h in fused] == [(4, 5), (4,)]
    assert fused[0].score == pytest.approx(math.log(0.4 * 0.35), abs=1e-5)  # am score: no LM
    assert fused[0].fusion_score == pytest.approx(2 * math.log(0.97), abs=1e-5)
    assert fused[1].fusion_score == pytest.approx(math.log(0.97), abs=1e-5)


def test_shallow_fusion_rejects_non_finite_scales(fused_setup):
    lm = fused_setup[3]
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            ShallowFusion(lm, bad)


# ---------------------------------------------------------------------------------------------
# train-token-lm and decode-asr --fusion-lm


@pytest.fixture(scope="module")
def token_lm(asr_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("token_lm")
    text = root / "text.txt"
    text.write_text("".join(f"{s}\n" for s in SENTENCES * 3))
    exp = root / "exp"
    argv = [
        "--text", str(text), "--bpe-model", str(asr_data["bpe_model"]), "--exp-dir", str(exp),
        "--embed-dim", "16", "--hidden-dim", "24", "--num-epochs", "2", "--valid-every", "5",
        "--batch-tokens", "200",
    ]  # fmt: skip
    train_token_lm.main(argv)
    return {"root": root, "text": text, "exp": exp, "argv": argv}


def test_train_token_lm_outputs_resume_and_determinism(token_lm, asr_data, capsys):
    exp = token_lm["exp"]
    for name in ("epoch-1.pt", "epoch-2.pt", "best.pt", "config.json", "cmd.sh"):
        assert (exp / name).is_file(), name
    valid = (exp / "log" / "valid.csv").read_text().splitlines()
    assert valid[0].split(",")[:3] == ["step", "epoch", "lr"] and len(valid) == 3
    from asr.data import Tokenizer

    lm = load_token_lm(exp / "best.pt", Tokenizer(asr_data["bpe_model"]).sp_pieces())
    assert not lm.training and lm.vocab_size == 40
    before = (exp / "epoch-2.pt").stat().st_mtime_ns
    code, err = run_main(train_token_lm.main, token_lm["argv"], capsys)
    assert code == 0, err
    assert (exp / "epoch-2.pt").stat().st_mtime_ns == before  # finished: nothing to do
    # the same command in another exp dir gives the same weights
    argv = list(token_lm["argv"])
    argv[argv.index("--exp-dir") + 1] = str(token_lm["root"] / "again")
    code, err = run_main(train_token_lm.main, argv, capsys)
    assert code == 0, err
    a = torch.load(exp / "epoch-2.pt", weights_only=False)["model"]
    b = torch.load(token_lm["root"] / "again" / "epoch-2.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_token_lm_cpu_bf16_without_native_bf16_is_a_clear_error(
    token_lm, capsys, monkeypatch
):
    """Where oneDNN has no bf16 kernels the LSTM fails under bf16 autocast: refused at the start
    (status 2, the option named), before the exp dir is made."""
    import common.bf16_check as bf16

    monkeypatch.setattr(bf16, "onednn_bf16", lambda: False)
    argv = list(token_lm["argv"])
    argv[argv.index("--exp-dir") + 1] = str(token_lm["root"] / "bf16")
    code, err = run_main(train_token_lm.main, [*argv, "--cpu-bf16", "true"], capsys)
    assert code == 2 and "--cpu-bf16 true: this CPU has no native bf16" in err, err
    assert not (token_lm["root"] / "bf16").exists()


def test_cosine_lr_ends():
    lrs = [train_token_lm.cosine_lr(s, 5, 2e-3, 0.1) for s in range(7)]
    assert lrs[0] == pytest.approx(2e-3) and lrs[2] == pytest.approx(1.1e-3)
    assert lrs[4] == lrs[5] == lrs[6] == pytest.approx(2e-4)  # final from the last step on
    assert all(a > b for a, b in zip(lrs[:4], lrs[1:5], strict=True))
    assert train_token_lm.cosine_lr(0, 1, 1.0, 0.5) == 1.0  # one planned step: no decay yet


def test_train_token_lm_cosine_schedule_and_resume(token_lm, tmp_path, capsys):
    """--lr-schedule cosine: the LR falls every step from --lr to --lr x --lr-final at the last
    planned step; resumed from epoch 1, the run goes on at its step's LR (same weights)."""
    argv = [*token_lm["argv"], "--lr-schedule", "cosine", "--lr", "4e-3", "--lr-final", "0.25"]
    argv[argv.index("--exp-dir") + 1] = str(tmp_path / "full")
    argv += ["--log-interval", "1"]
    code, err = run_main(train_token_lm.main, argv, capsys)
    assert code == 0, err
    rows = (tmp_path / "full" / "log" / "train.csv").read_text().splitlines()[1:]
    steps = [int(r.split(",")[0]) for r in rows]
    lrs = [float(r.split(",")[2]) for r in rows]
    total = steps[-1]
    assert steps == list(range(1, total + 1)) and total >= 4
    # a row logs the LR set for the step after it: row s holds cosine_lr(s)
    for s, lr in zip(steps, lrs, strict=True):
        assert lr == pytest.approx(train_token_lm.cosine_lr(s, total, 4e-3, 0.25), rel=1e-5)
    assert lrs[-1] == pytest.approx(1e-3)
    # resumed from epoch 1 of the same command: the same epoch-2 weights
    (tmp_path / "resumed").mkdir()
    (tmp_path / "resumed" / "epoch-1.pt").write_bytes(
        (tmp_path / "full" / "epoch-1.pt").read_bytes()
    )
    argv[argv.index("--exp-dir") + 1] = str(tmp_path / "resumed")
    code, err = run_main(train_token_lm.main, argv, capsys)
    assert code == 0, err
    a = torch.load(tmp_path / "full" / "epoch-2.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "epoch-2.pt", weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    plateau = torch.load(token_lm["exp"] / "epoch-2.pt", weights_only=False)["model"]
    assert not all(torch.equal(a["model"][k], plateau[k]) for k in plateau)


@pytest.mark.parametrize("option, value", [("--lr-schedule", "linear"), ("--lr-final", "1.5")])
def test_train_token_lm_bad_schedule(asr_data, token_lm, tmp_path, capsys, option, value):
    argv = [*token_lm["argv"], option, value]
    argv[argv.index("--exp-dir") + 1] = str(tmp_path / "exp")
    code, err = run_main(train_token_lm.main, argv, capsys)
    assert option in assert_user_error(code, err, "train-token-lm", option)
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize(
    "case, text, line, message",
    [
        ("empty line", "play some jazz\n\nbook a table\n", 2, "empty line"),
        ("empty file", "", None, "no sentence"),
    ],
)
def test_train_token_lm_bad_text(asr_data, tmp_path, capsys, case, text, line, message):
    path = tmp_path / "text.txt"
    path.write_text(text)
    argv = ["--text", str(path), "--bpe-model", str(asr_data["bpe_model"])]
    code, err = run_main(train_token_lm.main, [*argv, "--exp-dir", str(tmp_path / "exp")], capsys)
    where = f"{path}:{line}" if line else str(path)
    assert message in assert_user_error(code, err, "train-token-lm", where)
    assert not (tmp_path / "exp" / "epoch-1.pt").exists()


@pytest.fixture(scope="module")
def setup(asr_data, token_lm):
    ckpt = write_asr_checkpoint(token_lm["root"] / "asr.pt")
    return {"ckpt": ckpt, "lm": token_lm["exp"] / "best.pt", **asr_data}


def test_decode_asr_fusion_outputs_and_zero_scales(setup, tmp_path, capsys):
    code, err = run_main(decode.main, _args(setup, tmp_path / "plain"), capsys)
    assert code == 0, err
    plain = _nbest(tmp_path / "plain")
    for scale in ("0", "0.5"):
        out = tmp_path / f"lm{scale}"
        argv = _args(setup, out, "--fusion-lm", str(setup["lm"]), "--lm-scale", scale)
        code, err = run_main(decode.main, [*argv, "--ilm-scale", scale], capsys)
        assert code == 0, err
        recs = _nbest(out)
        assert all("fusion_score" in h for r in recs for h in r["hyps"])
        (summary,) = out.glob("decode-summary-*.json")
        assert summary.name.endswith(f"_lm{float(scale):g}_ilm{float(scale):g}.json") or (
            scale == "0" and summary.name.endswith("_lm0.json")
        )
        if scale == "0":
            for r in recs:
                for h in r["hyps"]:
                    assert h.pop("fusion_score") == 0.0
            assert recs == plain
        else:
            totals = [[h["am_score"] + h["fusion_score"] for h in r["hyps"]] for r in recs]
            assert all(t == sorted(t, reverse=True) for t in totals)


def test_decode_asr_fusion_bad_options_and_files(setup, tmp_path, capsys):
    lm = str(setup["lm"])
    cases = [
        (["--lm-scale", "0.3"], "--fusion-lm"),
        (["--fusion-lm", lm, "--method", "greedy"], "greedy"),
        (["--fusion-lm", lm, "--lm-scale", "nan"], "finite"),
        (["--fusion-lm", str(tmp_path / "missing.pt")], "missing.pt"),
        (["--fusion-lm", str(setup["ckpt"]), "--lm-scale", "0.3"], "not a fusion-LM checkpoint"),
    ]
    for extra, name in cases:
        code, err = run_main(decode.main, _args(setup, tmp_path / "out", *extra), capsys)
        assert_user_error(code, err, "decode-asr", name)


def test_load_token_lm_checks_the_bpe_pieces(setup, asr_data):
    from asr.data import Tokenizer

    pieces = Tokenizer(asr_data["bpe_model"]).sp_pieces()
    with pytest.raises(CheckpointError, match="another BPE model"):
        load_token_lm(setup["lm"], pieces[:-1] + ["other"])


# ---------------------------------------------------------------------------------------------
# tune-fusion


def test_tune_fusion_grid_choice_and_reuse(setup, tmp_path, capsys):
    from asr import tune_fusion

    out = tmp_path / "fused"
    base = _args(setup, out, "--fusion-lm", str(setup["lm"]), "--nbest", "4")
    argv = [
        *base[: base.index("--cuts")], "--cuts", str(setup["cuts"]), "--tune-set", "cuts",
        *base[base.index("--cuts") + 2 :], "--lm-scales", "0", "0.5", "--ilm-scales", "0",
        "--length-bonuses", "0", "1",
    ]  # fmt: skip
    code, err = run_main(tune_fusion.main, argv, capsys)
    assert code == 0, err
    result = json.loads((out / "fusion-tuned.json").read_text())
    assert len(result["grid"]) == 4
    best = min(result["grid"], key=lambda g: (g["wer"], g["lm_scale"], g["length_bonus"]))
    assert result["chosen"] == {k: best[k] for k in ("lm_scale", "ilm_scale", "length_bonus")}
    assert result["sets"]["cuts"]["wer"] == best["wer"]
    recs = _nbest(out)
    assert recs and all("fusion_score" in h for r in recs for h in r["hyps"])
    for g in result["grid"]:
        assert (out / "tune" / tune_fusion.point_name(g["lm_scale"], 0, g["length_bonus"])).is_dir()
    # a re-run reuses every grid point and chooses the same
    code, err = run_main(tune_fusion.main, argv, capsys)
    assert code == 0, err
    log = (out / "log-tune-fusion.txt").read_text()
    assert log.count("reusing") == 4
    assert json.loads((out / "fusion-tuned.json").read_text())["chosen"] == result["chosen"]


def test_tune_fusion_bad_options(setup, tmp_path, capsys):
    from asr import tune_fusion

    lm = str(setup["lm"])
    cases = [
        ([], "--fusion-lm"),
        (["--fusion-lm", lm, "--lm-scale", "0.2"], "--lm-scales"),
        (["--fusion-lm", lm, "--lm-scales", "nan"], "--lm-scales"),
        (["--fusion-lm", lm, "--ilm-scales", "-1"], "--ilm-scales"),
        (["--fusion-lm", lm, "--tune-set", "dev"], "--tune-set"),
    ]
    for extra, name in cases:
        argv = _args(setup, tmp_path / "out", *extra)
        if "--tune-set" not in extra:
            argv += ["--tune-set", "cuts"]
        code, err = run_main(tune_fusion.main, argv, capsys)
        assert_user_error(code, err, "tune-fusion", name)
