import json

import sentencepiece as spm
from lhotse import load_manifest

from common.wer import is_rare, read_word_counts


def test_lm_text_is_leak_free(prepared_mini):
    data = prepared_mini / "data"
    held_out = {
        s.text
        for split in ("dev", "test")
        for s in load_manifest(data / f"manifests/snips_nlu_{split}.jsonl.gz")
    }
    for name in ("pretrain", "finetune"):
        lines = (data / "lm" / f"{name}.txt").read_text().splitlines()
        assert lines and not (set(lines) & held_out), name
    pretrain = (data / "lm/pretrain.txt").read_text().splitlines()
    assert "set an alarm for seven a m" in pretrain  # external text, normalised
    assert "book a table in boston" not in pretrain  # equals a test sentence
    assert "play the song hey jude" not in pretrain  # equals a dev sentence (also in train)
    stats = json.loads((data / "lm/stats.json").read_text())
    assert stats["chat_removed_eval_sentences"] == 2
    assert stats["snips_train_removed_eval_sentences"] == 2


def test_rare_words(prepared_mini):
    lang = prepared_mini / "data" / "lang"
    counts = read_word_counts(lang / "word_counts.txt")
    asr = load_manifest(prepared_mini / "data/manifests/snips_supervisions_train.jsonl.gz")
    assert sum(counts.values()) == sum(len(s.text.split()) for s in asr)
    rare = set((lang / "rare_words.txt").read_text().split())
    assert rare == {w for w, c in counts.items() if c < 2}
    assert is_rare("never-seen-word", counts, 2)
    stats = json.loads((lang / "rare_stats.json").read_text())
    dev = stats["eval"]["snips_nlu_dev.jsonl.gz"]
    assert 0 < dev["rare_share"] <= 1


def test_bpe_special_ids(prepared_mini):
    sp = spm.SentencePieceProcessor(model_file=str(prepared_mini / "data/lang_bpe_40/bpe.model"))
    assert [sp.id_to_piece(i) for i in range(3)] == ["<blk>", "<sos/eos>", "<unk>"]
    assert sp.get_piece_size() == 40
    assert sp.decode(sp.encode("book a table")) == "book a table"


def test_fbank_cuts(prepared_mini):
    cuts = load_manifest(prepared_mini / "data/fbank/snips_cuts_train.jsonl.gz")
    assert len(cuts) == 10
    feats = cuts[0].load_features()
    assert feats.shape[1] == 80 and feats.shape[0] == cuts[0].num_frames
    assert cuts[0].supervisions[0].custom["intent"]
