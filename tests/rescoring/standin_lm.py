"""A small, honest stand-in for ``lm.scorer.LMScorer`` (same API, no neural network).

``from_checkpoint(path)`` reads a JSONL "checkpoint" of training rows
``{"text", "intent", "slots"}`` and estimates:

* an add-k word bigram LM (``score``: natural-log probability incl. end of sentence);
* intent = the intent whose training words overlap the sentence most (ties: alphabetical);
* slot tag of a word = its most frequent tag in training (``O`` if unseen).

It records every batch it is asked to score, so tests can check batching and caching.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path


class StandInLMScorer:
    calls: list[list[str]] = []  # class-level: instances are built inside the code under test

    def __init__(self, rows: list[dict], k: float = 0.1, batch_size: int = 64):
        self.uni: Counter = Counter()
        self.bi: Counter = Counter()
        self.intent_words: dict[str, Counter] = defaultdict(Counter)
        self.word_tags: dict[str, Counter] = defaultdict(Counter)
        for r in rows:
            w = r["text"].split()
            s = ["<s>", *w, "</s>"]
            self.uni.update(s[:-1])
            self.bi.update(zip(s[:-1], s[1:], strict=True))
            self.intent_words[r["intent"]].update(w)
            for word, tag in zip(w, r["slots"], strict=True):
                self.word_tags[word][tag] += 1
        self.k, self.vocab, self.batch_size = k, len(self.uni) + 2, batch_size

    @classmethod
    def from_checkpoint(cls, path, device="cpu", batch_size=64):
        rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
        return cls(rows, batch_size=batch_size)

    @property
    def has_nlu_heads(self) -> bool:
        return True

    def _logp(self, sentence: str) -> float:
        s = ["<s>", *sentence.split(), "</s>"]
        return sum(
            math.log((self.bi[(a, b)] + self.k) / (self.uni[a] + self.k * self.vocab))
            for a, b in zip(s[:-1], s[1:], strict=True)
        )

    def score(self, sentences: Sequence[str]) -> list[float]:
        sentences = list(sentences)
        type(self).calls.append(sentences)
        out = []
        for i in range(0, len(sentences), self.batch_size):  # batched like the real scorer
            out.extend(self._logp(s) for s in sentences[i : i + self.batch_size])
        return out

    def predict_nlu(self, sentences: Sequence[str]) -> list[tuple[str, list[str]]]:
        out = []
        for s in sentences:
            w = s.split()
            intent = min(
                self.intent_words, key=lambda i: (-sum(self.intent_words[i][x] > 0 for x in w), i)
            )
            tags = [self.word_tags[x].most_common(1)[0][0] if self.word_tags[x] else "O" for x in w]
            out.append((intent, tags))
        return out
