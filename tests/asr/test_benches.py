"""The ASR benchmark scripts (bench/) run end to end on the tiny preset and the fixture data,
and write the report they print; their shared training step is train-asr's step."""

from __future__ import annotations

import copy
import gzip
import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

from asr.config import get_model_preset
from asr.data import Tokenizer, load_cuts, make_dataloader
from asr.model import build_model
from asr.objective import TransducerForward, compute_loss
from common.dropout import FastDropout

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch, tmp_path):
    """Run ``bench/<name>.py ARGS --out FILE`` as ``python bench/<name>.py`` does, in this
    process; returns the report it wrote (which must end with a newline)."""
    monkeypatch.syspath_prepend(str(BENCH))

    def run(name: str, *args) -> dict:
        out = tmp_path / f"{name}.json"
        monkeypatch.setattr(sys, "argv", [f"{name}.py", *map(str, args), "--out", str(out)])
        runpy.run_path(str(BENCH / f"{name}.py"), run_name="__main__")
        text = out.read_text()
        assert text.endswith("\n")
        return json.loads(text)

    return run


def test_timed_step_is_the_training_step(asr_data, monkeypatch):
    """The helper's step moves the weights exactly as compute_loss -> backward -> step does."""
    monkeypatch.syspath_prepend(str(BENCH))
    from _common import asr_setup, timed_step

    tok, model_cfg, train_cfg = asr_setup(asr_data["bpe_model"], "tiny")
    assert torch.get_num_threads() == 1
    assert model_cfg.vocab_size == Tokenizer(asr_data["bpe_model"]).vocab_size
    batch = next(iter(make_dataloader(load_cuts(asr_data["cuts"]), tok, 5.0, shuffle=False)))
    torch.manual_seed(0)
    a = build_model(model_cfg).train()
    b, init = copy.deepcopy(a), copy.deepcopy(a)
    opt_a = torch.optim.AdamW(a.parameters(), lr=1e-3)
    opt_b = torch.optim.AdamW(b.parameters(), lr=1e-3)
    torch.manual_seed(1)
    sec, loss = timed_step(a, opt_a, batch, train_cfg)
    torch.manual_seed(1)
    ref, _ = compute_loss(TransducerForward(b), batch, train_cfg, torch.device("cpu"))
    opt_b.zero_grad()
    ref.backward()
    opt_b.step()
    assert sec > 0 and torch.isfinite(loss) and float(loss) == float(ref.detach())
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    params = zip(a.parameters(), init.parameters(), strict=True)
    assert any(not torch.equal(pa, p0) for pa, p0 in params)


def test_dropout_speed_bench(bench, asr_data):
    r = bench(
        "dropout_speed",
        *("--cuts", asr_data["cuts"], "--bpe-model", asr_data["bpe_model"], "--preset", "tiny"),
        *("--steps", 2, "--warmup", 1, "--profile"),
    )
    cfg = get_model_preset("tiny")
    cfg.vocab_size = Tokenizer(asr_data["bpe_model"]).vocab_size
    n_fast = sum(isinstance(m, FastDropout) for m in build_model(cfg).modules())
    assert r["dropout_modules"] == n_fast > 0
    assert r["timed_steps"] == 2 and len(r["batch_utts"]) == 2
    assert set(r["seconds_per_step"]) == {"torch", "fast"}
    assert all(v > 0 for v in r["seconds_per_step"].values())
    assert r["fast_over_torch"] > 0
    assert 0.0 <= r["torch_step_bernoulli_share"] <= 1.0


def test_a_bench_asking_more_batches_than_an_epoch_has_says_so(bench, asr_data):
    with pytest.raises(SystemExit, match="fewer than the 503 batches"):
        bench(
            "dropout_speed",
            *("--cuts", asr_data["cuts"], "--bpe-model", asr_data["bpe_model"]),
            *("--preset", "tiny", "--steps", 500),
        )


def test_speed_copies_step_bench(bench, asr_data, copy_paths):
    r = bench(
        "speed_copies_step",
        *("--cuts", asr_data["cuts"], "--speed-cuts", *copy_paths),
        *("--bpe-model", asr_data["bpe_model"], "--preset", "tiny"),
        *("--steps", 2, "--warmup", 0),
    )
    assert r["timed_steps"] == 2
    for name in ("original", "speed_copies"):
        row = r["per_step"][name]
        assert row["compute_s"] > 0 and row["load_s"] >= 0
        assert 0 < row["frames"] <= row["padded_frames"] and row["tokens"] > 0
    assert set(r["copies_over_original"]) == {"load_s", "compute_s", "frames"}


def test_augment_cost_bench(bench, asr_data):
    r = bench(
        "asr_augment_cost",
        *("--cuts", asr_data["cuts"], "--preset", "tiny", "--batches", 2, "--all", 0.25),
    )
    assert 1 <= r["batches"] <= 2 and r["median_batch_audio_s"] > 0 and r["threads"] == 1
    rows = r["variants"]
    assert list(rows) == [
        "stored features",
        "fbank on the fly, no augmentation",
        "speed 0.9/1.1",
        "reverb (room bank)",
        "white noise",
        "pink noise",
        "babble noise",
        "volume",
        "narrowband",
        "all at p=0.25 (speed 0.9/1/1.1)",
    ]
    assert rows["stored features"]["x_stored"] == 1.0
    assert all(v["ms_per_batch"] > 0 and v["ms_per_audio_second"] > 0 for v in rows.values())


def _per_voice_data(root: Path, hyps: dict[str, dict[str, str]]) -> None:
    """A supervisions manifest of 4 utterances (2 espeak-ng variants, 2 flite:slt) and one
    decode folder per entry of ``hyps`` (utterance id -> 1-best words)."""
    refs = {"a": "play some jazz", "b": "book a table", "c": "rate this book", "d": "add zorba"}
    custom = {
        "a": {"tts_engine": "espeak-ng", "tts_voice": "en-us+m3"},
        "b": {"tts_engine": "espeak-ng", "tts_voice": "en+f2"},
        "c": {"tts_engine": "flite", "tts_voice": "slt"},
        "d": {"tts_engine": "flite", "tts_voice": "slt"},
    }
    (root / "manifests").mkdir()
    with gzip.open(root / "manifests" / "snips_supervisions_dev.jsonl.gz", "wt") as f:
        for u in refs:
            f.write(json.dumps({"id": u, "text": refs[u], "custom": custom[u]}) + "\n")
    (root / "word_counts.txt").write_text("play 9\nsome 9\njazz 9\nbook 9\na 9\ntable 9\n")
    for name, hyp in hyps.items():
        (root / name).mkdir()
        with gzip.open(root / name / "nbest-dev.jsonl.gz", "wt") as f:
            for u, words in hyp.items():
                hyp = {"words": words, "am_score": 0.0}
                f.write(json.dumps({"id": u, "ref": refs[u], "hyps": [hyp]}) + "\n")


def test_per_voice_bench(bench, tmp_path, capsys):
    good = {"a": "play some jazz", "b": "book a table", "c": "rate this book", "d": "add zorba"}
    _per_voice_data(
        tmp_path,
        {
            "base1": good,
            "base2": {**good, "c": "rate the book"},  # 1 substitution
            "new": {**good, "d": ""},  # an empty hypothesis: 2 deletions, both rare
        },
    )
    r = bench(
        "asr_per_voice",
        *("--manifest-dir", tmp_path / "manifests", "--words", tmp_path / "word_counts.txt"),
        *("--sets", "dev", "--bootstrap-samples", 50),
        *("--system", f"base={tmp_path / 'base1'},{tmp_path / 'base2'}"),
        *("--system", f"new={tmp_path / 'new'}"),
    )
    dev = r["sets"]["dev"]
    assert set(dev) == {"(all)", "espeak-ng", "flite:slt"}
    assert dev["espeak-ng"]["utterances"] == 2 and dev["flite:slt"]["utterances"] == 2
    # seed mean by pooled counts: base has 0 and 1 errors of 11 words -> 1 / 22
    assert dev["(all)"]["base"]["wer"] == round(100 / 22, 2)
    assert dev["(all)"]["base"]["seeds_wer"] == [0.0, round(100 / 11, 2)]
    assert dev["flite:slt"]["new"]["wer"] == 40.0  # 2 of 5 words
    assert dev["flite:slt"]["new"]["rare_wer"] == 50.0  # 2 of rate, this, add, zorba
    assert dev["espeak-ng"]["new"]["wer"] == 0.0
    test = dev["flite:slt"]["new"]["wer_vs_base"]
    assert test["diff"] == round(40.0 - 10.0, 2) and 0.0 <= test["p_not_better"] <= 1.0
    assert "wer_vs_base" not in dev["flite:slt"]["base"]
    table = capsys.readouterr().out.split("\n\n")[-1].splitlines()
    assert table[0] == "| set | voice | utts | base | new |"
    assert (
        table[4]
        == f"| dev | flite:slt | 2 | 10.00 | 40.00 (+30.00, p={test['p_not_better']:.3f}) |"
    )
    bench(
        "asr_per_voice",
        *("--manifest-dir", tmp_path / "manifests", "--words", tmp_path / "word_counts.txt"),
        *("--sets", "dev", "--bootstrap-samples", 50, "--rows", "systems"),
        *("--system", f"base={tmp_path / 'base1'}", "--system", f"new={tmp_path / 'new'}"),
    )
    table = capsys.readouterr().out.split("\n\n")[-1].splitlines()
    assert table[0] == "| system | dev (all) (4) | dev espeak-ng (2) | dev flite:slt (2) |"
    assert table[2] == "| base | 0.00 | 0.00 | 0.00 |" and table[3].startswith(
        "| new | 18.18 (+18.18"
    )


@pytest.mark.parametrize(
    "name",
    [
        "asr_augment_cost",
        "asr_batch_padding",
        "asr_model_speed",
        "dropout_speed",
        "malloc_mmap_threshold",
        "speed_copies_step",
    ],
)
def test_training_step_benches_share_their_data_options(name, monkeypatch, capsys):
    """Every bench that takes training steps asks for --cuts (required) and --preset through
    _common.add_train_data_args (its help texts), and for --bpe-model where it tokenises."""
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(BENCH / f"{name}.py"), run_name="__main__")
    assert e.value.code == 0
    help_text = capsys.readouterr().out
    assert "asr/config.py preset: model, batch size, buckets" in help_text
    assert "train CutSet with features" in help_text
    assert ("the ASR's BPE model" in help_text) == (name != "asr_augment_cost")
    monkeypatch.setattr(sys, "argv", [f"{name}.py"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(BENCH / f"{name}.py"), run_name="__main__")
    assert e.value.code == 2 and "--cuts" in capsys.readouterr().err


def test_voice_of_groups(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from _common import voice_of

    espeak = {"tts_engine": "espeak-ng", "tts_voice": "en-us+f3"}
    flite = {"tts_engine": "flite", "tts_voice": "slt"}
    assert [voice_of(espeak, g) for g in ("family", "voice", "engine")] == [
        "espeak-ng",
        "espeak-ng:en-us+f3",
        "espeak-ng",
    ]
    assert [voice_of(flite, g) for g in ("family", "voice", "engine")] == [
        "flite:slt",
        "flite:slt",
        "flite",
    ]
    assert voice_of({}) == "?:?"
    with pytest.raises(ValueError, match="voice group 'speaker'"):
        voice_of(flite, "speaker")


def test_per_voice_bench_groups_by_engine(bench, tmp_path):
    good = {"a": "play some jazz", "b": "book a table", "c": "rate this book", "d": "add zorba"}
    _per_voice_data(tmp_path, {"base": good})
    r = bench(
        "asr_per_voice",
        *("--manifest-dir", tmp_path / "manifests", "--words", tmp_path / "word_counts.txt"),
        *("--sets", "dev", "--group", "engine", "--system", f"base={tmp_path / 'base'}"),
    )
    assert set(r["sets"]["dev"]) == {"(all)", "espeak-ng", "flite"}


def test_per_voice_bench_names_a_decode_missing_utterances(bench, tmp_path):
    good = {"a": "play some jazz", "b": "book a table", "c": "rate this book", "d": "add zorba"}
    short = {k: v for k, v in good.items() if k != "d"}
    _per_voice_data(tmp_path, {"base": good, "short": short})
    with pytest.raises(SystemExit, match=r"short/nbest-dev.jsonl.gz: 3 utterances, not the 4"):
        bench(
            "asr_per_voice",
            *("--manifest-dir", tmp_path / "manifests", "--words", tmp_path / "word_counts.txt"),
            *("--sets", "dev", "--system", f"base={tmp_path / 'base'}"),
            *("--system", f"short={tmp_path / 'short'}"),
        )


def test_batch_padding_bench_with_timed_steps(bench, asr_data):
    r = bench(
        "asr_batch_padding",
        *("--cuts", asr_data["cuts"], "--bpe-model", asr_data["bpe_model"], "--preset", "tiny"),
        *("--settings", "5:2", "--time-steps", 3),
    )
    assert r["utterances"] == 20
    assert set(r["settings"]) == {"5:2"}
    timing = r["timing"]["5:2"]
    assert timing["steps"] == 3 and timing["mean_step_seconds"] > 0


def test_beam_search_bench(bench, asr_data, trained_tiny):
    r = bench(
        "asr_beam_search",
        *("--checkpoint", trained_tiny / "epoch-60.pt", "--bpe-model", asr_data["bpe_model"]),
        *("--cuts", asr_data["cuts"], "--num-utts", 4, "--beam", 2, "--nbest", 2),
        *("--methods", "greedy", "modified_beam", "torchaudio_beam"),
        *("modified_beam:max_duration=5", "--repeats", 2),  # the same search, smaller batches
    )
    assert r["utterances"] == 4
    assert set(r["methods"]) == {
        "greedy",
        "modified_beam",
        "modified_beam:max_duration=5",
        "torchaudio_beam",
    }
    small, big = r["methods"]["modified_beam:max_duration=5"], r["methods"]["modified_beam"]
    assert small["batches"] > big["batches"] == r["batches"]
    assert small["options"]["max_duration"] == 5
    # the padding is masked: the batches change the time, not the hypotheses
    assert (small["wer"], small["oracle_wer"]) == (big["wer"], big["oracle_wer"])
    ref = r["methods"]["torchaudio_beam"]
    assert ref["speed_vs_torchaudio"] == 1.0 and ref["wer_minus_torchaudio"] == 0.0
    for m in r["methods"].values():
        assert 0 <= m["oracle_wer"] <= m["wer"]
        assert 0 <= m["search_seconds"] <= m["seconds"]
    assert r["batch_order"] == "duration"
    # smaller batches in manifest order (their hypotheses may differ: the padding differs)
    m = bench(
        "asr_beam_search",
        *("--checkpoint", trained_tiny / "epoch-60.pt", "--bpe-model", asr_data["bpe_model"]),
        *("--cuts", asr_data["cuts"], "--num-utts", 4, "--beam", 2, "--nbest", 2),
        *("--methods", "modified_beam", "modified_beam:merge_same_text=1"),
        *("--batch-order", "manifest", "--max-duration", 5),
    )
    assert m["batch_order"] == "manifest" and m["batches"] > r["batches"]
    for spec in ("modified_beam", "modified_beam:merge_same_text=1"):
        assert 0 <= m["methods"][spec]["oracle_wer"] <= m["methods"][spec]["wer"]


def _train_log(d: Path, rows: list[tuple[int, float, float]]) -> Path:
    """A train-asr log folder: (step, dev greedy WER, held-out greedy WER) per check."""
    d.mkdir(parents=True)
    valid = ["step,epoch,lr,dev_loss,dev_greedy_wer,elapsed_s"]
    monitor = ["step,epoch,set,greedy_wer,elapsed_s"]
    for step, dev, held in rows:
        valid.append(f"{step},1,0.001,,{dev},{step / 2}")
        monitor.append(f"{step},1,test_unseen_engine,{held},{step / 2}")
    (d / "valid.csv").write_text("\n".join(valid) + "\n")
    (d / "monitor.csv").write_text("\n".join(monitor) + "\n")
    return d


def test_asr_curves_compares_runs_at_their_common_steps(bench, tmp_path, capsys):
    two = _train_log(tmp_path / "two", [(200, 90.0, 95.0), (400, 80.0, 85.0), (600, 70.0, 75.0)])
    one = _train_log(tmp_path / "one", [(200, 91.0, 99.0), (400, 79.0, 97.0), (500, 1.0, 1.0)])
    report = bench("asr_curves", "--run", f"2 engines={two}", "--run", f"1 engine={one}",
                   "--last", "2")  # fmt: skip
    assert report["sets"] == ["dev", "test_unseen_engine"] and report["steps"] == [200, 400]
    assert report["wer"]["1 engine"]["test_unseen_engine"] == [99.0, 97.0]  # not step 500's
    assert report["mean_last"]["2 engines"] == {"dev": 85.0, "test_unseen_engine": 90.0}
    assert report["mean_last"]["1 engine"] == {"dev": 85.0, "test_unseen_engine": 98.0}
    md = capsys.readouterr().out
    assert "| 400 | 80.00 | 79.00 | 85.00 | 97.00 |" in md
    assert "| mean of steps 200, 400 | **85.00** | **85.00** | **90.00** | **98.00** |" in md


def test_asr_curves_names_runs_without_a_common_check(bench, tmp_path):
    a = _train_log(tmp_path / "a", [(200, 90.0, 95.0)])
    b = _train_log(tmp_path / "b", [(300, 90.0, 95.0)])
    with pytest.raises(SystemExit, match="have no check at a common step"):
        bench("asr_curves", "--run", f"a={a}", "--run", f"b={b}")
    with pytest.raises(SystemExit, match="valid.csv: no such file"):
        bench("asr_curves", "--run", f"a={a}", "--run", f"b={tmp_path / 'absent'}")


def test_nbest_expansion_replaces_spans_by_similar_phrases(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from nbest_expansion import expand

    hyps = ["play some jass", "play sum jass"]
    out = expand(hyps, ["jazz", "some jazz", "rock"], 1, 2, 2, 60.0)
    # the n-best first, in its order; then each new sentence with its first derivation (spans
    # by start word, then length): "jass" -> "jazz" gives "play some jazz" again; "rock" and
    # every span of the second hypothesis are not matched
    assert out == {
        "play some jass": "nbest0",
        "play sum jass": "nbest1",
        "play some jazz jass": "exp:some->some jazz",  # fuzz.ratio 61.5
        "play some jazz": "exp:some jass->some jazz",
    }
    assert expand(hyps, ["jazz"], 2, 1, 1, 100.0) == {h: f"nbest{k}" for k, h in enumerate(hyps)}


def test_nbest_expansion_scores_are_the_transducer_and_fusion_scores(
    monkeypatch, asr_data, trained_tiny
):
    """``am`` is the RNN-T loss over all alignments (torchaudio's, too); ``lm`` / ``ilm`` the
    token-by-token sums ShallowFusion's rows give; a text scores the same alone or padded."""
    monkeypatch.syspath_prepend(str(BENCH))
    from nbest_expansion import exact_scores

    from asr.decode import load_transducer
    from asr.fusion import ShallowFusion, TokenLM, TokenLMConfig
    from asr.loss import rnnt_loss_torchaudio

    model, _ = load_transducer(trained_tiny / "epoch-60.pt")
    tok = Tokenizer(asr_data["bpe_model"])
    torch.manual_seed(0)
    lm = TokenLM(TokenLMConfig(embed_dim=8, hidden_dim=12, dropout=0.0), tok.vocab_size).eval()
    batch = next(iter(make_dataloader(load_cuts(asr_data["cuts"]), tok, 5.0, shuffle=False)))
    with torch.no_grad():
        enc, lens = model.transcribe(batch["feats"][:1], batch["feat_lens"][:1])
    enc = enc[:, : int(lens[0])]
    texts = ["play some jazz", "what is the weather today", "book"]
    both = exact_scores(model, lm, tok, enc, [*texts, ""])
    # the empty hypothesis: every frame emits blank (the loss's U = 0 case), no LM terms
    with torch.no_grad():
        pred0, pl0, _ = model.predict(torch.zeros(1, 1, dtype=torch.long), torch.tensor([1]), None)
        lp0 = model.join(enc, torch.tensor([enc.shape[1]]), pred0, pl0)[0].log_softmax(-1)
    assert both["am"][3] == pytest.approx(float(lp0[0, :, 0, 0].sum()), abs=1e-3)
    assert (both["lm"][3], both["ilm"][3], both["ntok"][3]) == (0.0, 0.0, 0)
    for k, text in enumerate(texts):
        one = exact_scores(model, lm, tok, enc, [text])
        for key in ("am", "lm", "ilm"):
            assert one[key][0] == pytest.approx(both[key][k], abs=1e-4), (key, text)
        ids = torch.tensor([tok.encode(text)])
        assert one["ntok"] == [ids.shape[1]]
        with torch.no_grad():
            pred, pl, _ = model.predict(
                torch.cat([torch.zeros(1, 1, dtype=torch.long), ids], 1),
                torch.tensor([ids.shape[1] + 1]),
                None,
            )
            logits, _, _ = model.join(enc, torch.tensor([enc.shape[1]]), pred, pl)
            ref_am = -rnnt_loss_torchaudio(
                logits, ids, torch.tensor([enc.shape[1]]), torch.tensor([ids.shape[1]])
            )

            # ShallowFusion's rows, token by token: lm_scale 1 gives log P_LM, ilm_scale 1 -log P_ILM
            def join(encs, preds):
                return model.join(
                    encs[:, None],
                    torch.ones(len(encs), dtype=torch.long),
                    preds[:, None],
                    torch.ones(len(preds), dtype=torch.long),
                )[0][:, 0, 0].log_softmax(-1)

            lm_sum = ilm_sum = 0.0
            lm_rows = ShallowFusion(lm, 1.0, 0.0).start(join, pred[:, 0])
            ilm_rows = ShallowFusion(lm, 0.0, 1.0).start(join, pred[:, 0])
            for u, t in enumerate(ids[0].tolist()):
                lm_sum += float(lm_rows[0][0, t])
                ilm_sum -= float(ilm_rows[0][0, t])
                step = torch.tensor([t])
                lm_rows = ShallowFusion(lm, 1.0, 0.0).rows(join, pred[:, u + 1], step, lm_rows[1:])
                ilm_rows = ShallowFusion(lm, 0.0, 1.0).rows(
                    join, pred[:, u + 1], step, ilm_rows[1:]
                )
        assert one["am"][0] == pytest.approx(float(ref_am[0]), abs=1e-3)
        assert one["lm"][0] == pytest.approx(lm_sum, abs=1e-4)
        assert one["ilm"][0] == pytest.approx(ilm_sum, abs=1e-4)


def test_nbest_expansion_bench(bench, asr_data, trained_tiny, tmp_path):
    """Misspelt hypotheses of four utterances, a lexicon holding the right words: every
    reference enters the expanded list (oracle 0), and the n-best oracle is worse."""
    cuts = load_cuts(asr_data["cuts"]).subset(first=4)
    recs, words = [], []
    for c in cuts:
        ref = c.supervisions[0].text.split()
        words.append(ref[-1])
        wrong = ref[:-1] + [ref[-1][:-1] + ("x" if ref[-1][-1] != "x" else "y")]
        recs.append(
            {
                "id": c.supervisions[0].id,
                "ref": " ".join(ref),
                "hyps": [{"words": " ".join(wrong), "tokens": [], "am_score": 0.0}],
            }
        )
    nbest = tmp_path / "nbest-dev.jsonl.gz"
    with gzip.open(nbest, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in recs)
    lex = tmp_path / "lexicons"
    lex.mkdir()
    (lex / "global.txt").write_text("".join(f"{w}\n" for w in dict.fromkeys(words)))
    counts = tmp_path / "word_counts.txt"
    common = {w for c in cuts for w in c.supervisions[0].text.split()} - set(words)
    # the replaced words are rare, the others common
    counts.write_text("".join(f"{w} 1\n" for w in words) + "".join(f"{w} 9\n" for w in common))
    r = bench(
        "nbest_expansion",
        *("--checkpoint", trained_tiny / "epoch-60.pt", "--bpe-model", asr_data["bpe_model"]),
        *("--cuts", asr_data["cuts"], "--nbest", nbest, "--lexicon", lex),
        *("--word-counts", counts, "--max-utts", 4, "--min-similarity", 50),
    )
    assert r["utterances"] == 4 and r["expansions_per_utt"] >= 1
    assert r["expanded_oracle"]["wer"] == 0.0 < r["nbest_oracle"]["wer"]
    assert r["rare_token_recall_nbest"] == 0.0 and r["rare_token_recall_expanded"] == 1.0
    assert r["score_deficit_good_expansions"]["count"] >= 4
    assert r["first_pass_1best"] == r["nbest_exact_rerank"]  # one hypothesis each


def test_nbest_expansion_bench_names_a_bad_nbest_line(bench, asr_data, trained_tiny, tmp_path):
    nbest = tmp_path / "nbest.jsonl"
    nbest.write_text(
        '{"id": "utt00", "ref": "play some jazz", "hyps": [{"words": "play", "am_score": -1.0}]}\n'
        '{"id": "utt01", "ref": "what is the weather", "hyps": [{"am_score": -1.0}]}\n'
    )
    (tmp_path / "global.txt").write_text("jazz\n")
    (tmp_path / "counts.txt").write_text("play 9\n")
    with pytest.raises(ValueError, match=r"nbest.jsonl:2 .*words"):
        bench(
            "nbest_expansion",
            *("--checkpoint", trained_tiny / "epoch-60.pt", "--bpe-model", asr_data["bpe_model"]),
            *("--cuts", asr_data["cuts"], "--nbest", nbest, "--lexicon", tmp_path / "global.txt"),
            *("--word-counts", tmp_path / "counts.txt"),
        )


def test_malloc_mmap_threshold_bench(bench, asr_data):
    """Two variants in alternating processes on the same batches: the same losses (malloc
    changes no number), and a summary row per threshold."""
    r = bench(
        "malloc_mmap_threshold",
        *("--cuts", asr_data["cuts"], "--bpe-model", asr_data["bpe_model"]),
        *("--preset", "tiny", "--max-duration", 5, "--thresholds", 0, 64),
        *("--rounds", 1, "--steps", 2, "--warmup", 1),
    )
    assert set(r["runs"]) == {"0", "64"} and r["summary"]["same_final_loss_everywhere"]
    for t in ("0", "64"):
        row = r["summary"][t]
        assert row["s_per_step"] > 0 and row["minor_faults_per_step"] >= 0
        assert row["max_rss_mb"] > 0
    assert r["summary"]["0"]["speed_vs_first"] == 1.0


def test_model_speed_bench(bench, asr_data):
    r = bench(
        "asr_model_speed",
        *("--cuts", asr_data["cuts"], "--bpe-model", asr_data["bpe_model"], "--preset", "tiny"),
        *(
            "--steps",
            2,
            "--warmup",
            1,
            "--variant",
            "tiny=",
            "--variant",
            "half=--half-rate-layers 0:1",
        ),
        *("--variant", "deep=--num-encoder-layers 3 --half-rate-layers 1:3"),
    )
    rows = r["variants"]
    assert list(rows) == ["tiny", "half", "deep"] and r["timed_steps"] == 2
    assert rows["tiny"]["over_first"] == 1.0 and rows["deep"]["options"].startswith("--num")
    assert rows["half"]["params"] == rows["tiny"]["params"] < rows["deep"]["params"]
    assert all(v["seconds_per_step"] > 0 for v in rows.values())


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("noname", "expected NAME=OPTIONS"),
        ("x=--no-such-option 1", "not a model option"),
        ("x=--half-rate-layers 5:9", "--half-rate-layers must be"),
        ("x=--num-encoder-layers two", "invalid int value"),
    ],
)
def test_model_speed_bench_names_a_bad_variant(bench, asr_data, variant, message):
    with pytest.raises(SystemExit, match=message):
        bench(
            "asr_model_speed",
            *("--cuts", asr_data["cuts"], "--bpe-model", asr_data["bpe_model"]),
            *("--preset", "tiny", "--variant", variant),
        )
