"""Shared fixtures: a hand-written mini SNIPS corpus and tiny LM text, built per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.bf16_check import onednn_bf16

#: Tests that run LSTM steps under CPU bf16 autocast: without oneDNN's bf16 kernels (no
#: avx512_bf16 / AMX) those steps fail, so the tests skip there (the refusals are tested apart).
NATIVE_BF16 = pytest.mark.skipif(
    not onednn_bf16(), reason="this CPU has no native bf16: bf16 LSTM steps cannot run here"
)

HEADER = "u_id\tutterance\tslot-labels\tintent\n"

# (utterance, labels, intent); ids are assigned per split. Covers numbers, dates, times,
# non-ASCII letters, punctuation and every SNIPS intent.
TRAIN_ROWS = [
    (
        "Add this tune to my Jazz Classics playlist",
        "O O AddToPlaylist/music_item O AddToPlaylist/playlist_owner AddToPlaylist/playlist AddToPlaylist/playlist O",
        "AddToPlaylist",
    ),
    (
        "Book a table for 3 at 7:30 pm in Paris",
        "O O O O BookRestaurant/party_size_number O BookRestaurant/timeRange BookRestaurant/timeRange O BookRestaurant/city",
        "BookRestaurant",
    ),
    (
        "Will it snow in Zürich on Feb. 21st ?",
        "O O GetWeather/condition_description O GetWeather/city O GetWeather/timeRange GetWeather/timeRange O",
        "GetWeather",
    ),
    (
        "Play some music from 1975 by Queen",
        "O O O O PlayMusic/year O PlayMusic/artist",
        "PlayMusic",
    ),
    (
        "Rate this book 4 out of 6 stars",
        "O O RateBook/object_type RateBook/rating_value O O RateBook/best_rating RateBook/rating_unit",
        "RateBook",
    ),
    (
        "Find the TV show The Wire",
        "O O SearchCreativeWork/object_type SearchCreativeWork/object_type SearchCreativeWork/object_name SearchCreativeWork/object_name",
        "SearchCreativeWork",
    ),
    (
        "What movies are playing at the closest cinema ?",
        "O SearchScreeningEvent/movie_type O O O O SearchScreeningEvent/spatial_relation SearchScreeningEvent/object_location_type O",
        "SearchScreeningEvent",
    ),
    (
        "Play the song Hey Jude",
        "O O PlayMusic/music_item PlayMusic/track PlayMusic/track",
        "PlayMusic",
    ),
    (
        "What is the weather in Boston tomorrow",
        "O O O O O GetWeather/city GetWeather/timeRange",
        "GetWeather",
    ),
    (
        "Book a  table for two",  # double space: the upstream repair rule
        "O O O O O BookRestaurant/party_size_number",
        "BookRestaurant",
    ),
    (
        "Add Hey Jude to the top-20 playlist",
        "O AddToPlaylist/entity_name AddToPlaylist/entity_name O O AddToPlaylist/playlist AddToPlaylist/playlist",
        "AddToPlaylist",
    ),
    (
        "Play the song Hey Jude",
        "O O PlayMusic/music_item PlayMusic/track PlayMusic/track",
        "PlayMusic",
    ),
]
DEV_ROWS = [
    ("Play a song by Queen", "O O PlayMusic/music_item O PlayMusic/artist", "PlayMusic"),
    ("What is the weather in Paris", "O O O O O GetWeather/city", "GetWeather"),
    (
        "Rate this book 5 stars",
        "O O RateBook/object_type RateBook/rating_value RateBook/rating_unit",
        "RateBook",
    ),
    # equal to a train sentence after normalisation: must be filtered out of LM text
    (
        "play the song Hey Jude.",
        "O O PlayMusic/music_item PlayMusic/track PlayMusic/track",
        "PlayMusic",
    ),
]
TEST_ROWS = [
    ("Book a table in Boston", "O O O O BookRestaurant/city", "BookRestaurant"),
    (
        "Find the movie Jaws",
        "O O SearchCreativeWork/object_type SearchCreativeWork/object_name",
        "SearchCreativeWork",
    ),
    (
        "Add Queen to my workout playlist",
        "O AddToPlaylist/artist O AddToPlaylist/playlist_owner AddToPlaylist/playlist O",
        "AddToPlaylist",
    ),
    (
        "Is it sunny in Tokyo",
        "O O GetWeather/condition_description O GetWeather/city",
        "GetWeather",
    ),
]

LM_TEXT = [
    "Set an alarm for 7 am",
    "what is the weather in tokyo",
    "Play the song Hey Jude!",  # a train sentence: kept; a dev sentence: removed
    "book a table in boston",  # equals a test sentence after normalisation: removed
    "tell me a joke about cats",
]


def write_snips_split(path: Path, split: str, rows) -> Path:
    lines = [
        f"snips-{split}-{i}\t{u}\t{lab}\t{intent}\n" for i, (u, lab, intent) in enumerate(rows)
    ]
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    return path


def write_mini_snips(corpus_dir: Path) -> Path:
    corpus_dir.mkdir(parents=True, exist_ok=True)
    write_snips_split(corpus_dir / "train.tsv", "train", TRAIN_ROWS)
    write_snips_split(corpus_dir / "valid.tsv", "valid", DEV_ROWS)
    write_snips_split(corpus_dir / "test.tsv", "test", TEST_ROWS)
    return corpus_dir


@pytest.fixture(scope="session")
def mini_snips_dir(tmp_path_factory) -> Path:
    """A mini SNIPS corpus (train.tsv / valid.tsv / test.tsv)."""
    return write_mini_snips(tmp_path_factory.mktemp("snips"))


@pytest.fixture(scope="session")
def mini_lm_text_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("lm_text")
    (d / "chat.txt").write_text("".join(s + "\n" for s in LM_TEXT), encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def prepared_mini(tmp_path_factory, mini_snips_dir, mini_lm_text_dir) -> Path:
    """The mini corpus through prepare-snips (with TTS), fbank, BPE, LM text and rare words.

    Returns the work dir holding ``data/``.
    """
    from data_prep.bpe import BpeOptions, train_bpe
    from data_prep.fbank import FbankOptions, compute_fbank
    from data_prep.lm_text import LmTextOptions, prepare_lm_text
    from data_prep.rare_words import RareWordOptions, compute_rare_words
    from data_prep.snips import PrepareSnipsConfig, prepare_snips

    work = tmp_path_factory.mktemp("work")
    data = work / "data"
    prepare_snips(
        PrepareSnipsConfig(
            corpus_dir=mini_snips_dir,
            output_dir=data / "manifests",
            audio_dir=data / "audio",
            asr_train_subset=10,
        )
    )
    compute_fbank(FbankOptions(manifest_dir=data / "manifests", output_dir=data / "fbank"))
    train_bpe(
        BpeOptions(
            supervisions=data / "manifests/snips_supervisions_train.jsonl.gz",
            lang_dir=data / "lang_bpe_40",
            vocab_size=40,
        )
    )
    prepare_lm_text(
        LmTextOptions(
            manifest_dir=data / "manifests", lm_text_dir=mini_lm_text_dir, output_dir=data / "lm"
        )
    )
    m = data / "manifests"
    compute_rare_words(
        RareWordOptions(
            supervisions=m / "snips_supervisions_train.jsonl.gz",
            eval_manifests=(m / "snips_nlu_dev.jsonl.gz", m / "snips_nlu_test.jsonl.gz"),
            lang_dir=data / "lang",
            threshold=2,
        )
    )
    return work
