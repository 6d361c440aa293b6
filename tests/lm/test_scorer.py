"""LMScorer: batched scoring equals one-at-a-time scoring, eos handling, NLU prediction."""

import math

import pytest
import torch

from common.checkpoint import CheckpointError
from lm.config import ModelConfig
from lm.model import MultitaskLM
from lm.scorer import LMScorer
from lm.tokenizer import BOS_ID, EOS_ID, LMTokenizer

SENTS = [
    "play hey jude by the beatles",
    "",
    "what is the weather in paris",
    "xylophone zqxj quux",  # unseen words: scored through subword pieces / <unk>
    "play",
    "book a table for two in paris tonight please with my friends and family",
    "play hey jude",
]


@pytest.fixture(scope="module")
def tok(pretrained) -> LMTokenizer:
    return LMScorer.from_checkpoint(pretrained).tok


@pytest.mark.parametrize(
    ("arch", "slot_context"),
    [("lstm", "bilstm"), ("lstm", "sentence"), ("transformer", "bilstm")],
)
def test_batched_equals_single(tok, arch, slot_context):
    torch.manual_seed(0)
    cfg = ModelConfig(
        arch=arch, embed_dim=32, hidden_dim=48, num_heads=2, dropout=0.3, slot_context=slot_context
    )
    scorer = LMScorer(
        MultitaskLM(cfg, tok.vocab_size, 3, 5), tok, ["a", "b", "c"], list("OBIXY"), batch_size=4
    )
    batched = scorer.score(SENTS)
    single = [scorer.score([s])[0] for s in SENTS]
    assert len(batched) == len(SENTS)
    for b, s in zip(batched, single, strict=True):
        assert abs(b - s) < 1e-4
    assert scorer.score(SENTS) == batched  # deterministic (dropout is off)
    nlu_b = scorer.predict_nlu(SENTS)
    nlu_s = [scorer.predict_nlu([s])[0] for s in SENTS]
    assert nlu_b == nlu_s
    assert [len(slots) for _, slots in nlu_b] == [len(s.split()) for s in SENTS]


def test_empty_sentence_is_log_p_eos_given_bos(tok):
    torch.manual_seed(1)
    model = MultitaskLM(ModelConfig(embed_dim=16, hidden_dim=16, dropout=0.0), tok.vocab_size)
    scorer = LMScorer(model, tok)
    with torch.no_grad():
        logp = model.lm_logits(model.eval().encode(torch.tensor([[BOS_ID]]))).log_softmax(-1)
    assert scorer.score([""])[0] == pytest.approx(logp[0, 0, EOS_ID].item(), abs=1e-5)
    # a longer sentence sums more negative log-probs
    assert all(x < 0 for x in scorer.score(SENTS))


def test_trained_checkpoint_scores_and_predicts(multitask_ckpt, pretrained):
    scorer = LMScorer.from_checkpoint(multitask_ckpt, batch_size=2)
    assert scorer.has_nlu_heads
    scores = scorer.score(SENTS)
    assert all(math.isfinite(x) and x < 0 for x in scores)
    # the trained LM prefers a training sentence over its reversal
    good, bad = scorer.score(["what is the weather in paris", "paris in weather the is what"])
    assert good > bad
    ((intent, slots),) = scorer.predict_nlu(["play hey jude by the beatles"])
    assert intent in scorer.intents and len(slots) == 6
    assert set(slots) <= set(scorer.slot_tags)

    lm_only = LMScorer.from_checkpoint(pretrained)
    assert not lm_only.has_nlu_heads
    with pytest.raises(RuntimeError, match="no NLU heads"):
        lm_only.predict_nlu(["play"])


def test_bad_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        LMScorer.from_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt: cannot load"):
        LMScorer.from_checkpoint(bad)
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an LM checkpoint"):
        LMScorer.from_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize("slot_context", ["bilstm", "sentence"])
def test_forward_without_lm_head_gives_the_same_nlu_heads(tok, slot_context):
    """predict_nlu runs forward(lm=False): the NLU heads are those of the full forward."""
    from lm.data import collate

    torch.manual_seed(0)
    cfg = ModelConfig(embed_dim=32, hidden_dim=48, dropout=0.3, slot_context=slot_context)
    model = MultitaskLM(cfg, tok.vocab_size, 3, 5).eval()
    scorer = LMScorer(model, tok, ["a", "b", "c"], list("OBIXY"), batch_size=4)
    b = collate(scorer._examples(SENTS))
    args = (b.inputs, b.lengths, b.word_pos)
    with torch.no_grad():
        full = model(*args, word_end=b.word_end)
        nlu_only = model(*args, word_end=b.word_end, lm=False)
    assert "lm" in full and "lm" not in nlu_only
    for key in ("intent", "slot"):
        assert torch.equal(full[key], nlu_only[key]), key
