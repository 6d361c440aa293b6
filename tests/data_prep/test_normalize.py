import pytest

from data_prep.normalize import normalize_text, normalize_token, normalize_tokens


@pytest.mark.parametrize(
    "raw, expected",
    [
        (
            "Book a table for 3 at 7:30 pm on Feb. 21st",
            "book a table for three at seven thirty p m on february twenty first",
        ),
        ("Murone Kōgen Café", "murone kogen cafe"),
        ("December 26, 2040", "december twenty sixth twenty forty"),
        (
            "songs from the 90's and the 1990s and 00s",
            "songs from the nineties and the nineteen nineties and two thousands",
        ),
        ("9/11/2035", "september eleventh twenty thirty five"),
        ("R&B top-20", "r and b top twenty"),
        ("at 7:05 or 8:00 A.M.", "at seven oh five or eight o'clock a m"),
        (
            "I'd like 1,000 tickets for $5 at 50%",
            "i'd like one thousand tickets for five dollars at fifty percent",
        ),
        ("3.5 stars in 2005", "three point five stars in two thousand five"),
        ("I am here", "i am here"),
        ("what's on , the list ?", "what's on the list"),
        ("Mr. Smith b52", "mister smith b fifty two"),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_tokens_keep_alignment():
    # one entry per input token, possibly empty, so labels can follow the words
    assert normalize_tokens(["play", "?", "top-20"]) == [["play"], [], ["top", "twenty"]]


def test_output_is_ascii_lowercase_without_punctuation():
    for tok in ["Ñandú", "Straße!", "«Hello»", "C'est", "#1"]:
        for w in normalize_token(tok):
            assert w.isascii() and w == w.lower()
            assert all(c.isalnum() or c == "'" for c in w)
