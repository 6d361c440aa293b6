"""Contextual biasing of the RNN-T search: an Aho-Corasick context graph over BPE token ids, the
phrase lists (lexicons) it is built from, and the per-utterance choice of lists.

The graph follows icefall's ``ContextGraph`` (``icefall/context_graph.py``, Wei Kang, 2023;
k2-fsa/icefall), strict mode: a trie of the phrases' token sequences with Aho-Corasick fail and
output links. While a hypothesis follows a phrase, each token earns the phrase's per-token bonus;
when the match fails, the search falls back along the fail links to the longest suffix that is
still a phrase prefix and gives back the bonus of the abandoned part (the step's score is the
difference of the two nodes' accumulated bonuses); when a phrase is completed the step also earns
its ``output_score``, the accumulated bonus of every phrase ending there, which stays earned.
At the end of the utterance :meth:`ContextGraph.finalize` gives back the bonus of the unfinished
(or just completed) match, so a finished hypothesis holds exactly the sum, over every phrase
occurrence in it (overlapping ones included), of that phrase's tokens' bonuses.

References: Aho & Corasick, "Efficient string matching", CACM 1975; Kang et al., "Fast and
parallel decoding for transducer", ICASSP 2023 (modified beam search); icefall's context graph
and ``modified_beam_search(context_graph=...)``.

Lexicon files (the format of ``extract-slot-lexicon``): one phrase per line, ``phrase`` or
``phrase<TAB>count`` (the count is read and ignored here); runs of white space in a phrase are one
space. An empty file is an empty list. Errors naming ``file:line``: an empty line, more than one
TAB, a count that is not a positive integer, a phrase listed twice in one file, more than
``max_phrases`` phrases, a phrase the BPE model tokenises to nothing or to ``<unk>`` (characters
outside the model) or to a special symbol. Two different phrases of one list with the same token
ids (sentencepiece normalises e.g. full-width letters) are one phrase: the later one is skipped,
counted and logged.

Usage:
    graph = ContextGraph(bonus=1.5)
    graph.build([[5, 9], [9, 12, 4]])
    delta, state, matched = graph.forward_one_step(graph.root, 5)
    delta, state = graph.finalize(state)

    biasing = ContextBiasing.load(lexicon, tok, bonus=1.5, lists_path=None, utt_ids=ids)
    graph = biasing.graph_for(utt_id)     # None: this utterance is not biased
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from asr.data import Tokenizer
from common.io import InputError
from common.lexicon import MAX_LEXICON_PHRASES, read_context_map, read_lexicon_entries

#: Default limit of phrases per lexicon file (the issue's "100,000 phrases" case is an error).
MAX_PHRASES = MAX_LEXICON_PHRASES
#: The list that utterances absent from ``--context-lists`` are biased with, if it exists.
GLOBAL_LIST = "global"
#: Token ids below this are ``<blk>``, ``<sos/eos>`` and ``<unk>`` (see ``data_prep/bpe.py``).
NUM_SPECIAL_IDS = 3


class ContextState:
    """A node of :class:`ContextGraph` (icefall's ``ContextState``).

    Attributes:
        id: node number, root = 0.
        token: the token on the arc into this node (-1 for the root).
        token_score: bonus of that arc (the largest per-token bonus of the phrases through it).
        node_score: accumulated bonus from the root to this node.
        output_score: sum of the ``node_score`` of every phrase that ends here (this node's own
            phrase if ``is_end``, plus those reached by output links: its phrase suffixes).
        is_end: a phrase ends at this node.
        level: depth (tokens from the root).
        phrase: the text of the phrase ending here ("" if none or not given).
        next: children by token id.
        fail: the node of the longest proper suffix that is a phrase prefix (root for none).
        output: the nearest node on the fail chain where a phrase ends (None for none).
    """

    __slots__ = (
        "id",
        "token",
        "token_score",
        "node_score",
        "output_score",
        "is_end",
        "level",
        "phrase",
        "next",
        "fail",
        "output",
    )

    def __init__(self, id: int, token: int, token_score: float, level: int) -> None:
        self.id = id
        self.token = token
        self.token_score = token_score
        self.node_score = 0.0
        self.output_score = 0.0
        self.is_end = False
        self.level = level
        self.phrase = ""
        self.next: dict[int, ContextState] = {}
        self.fail: ContextState | None = None
        self.output: ContextState | None = None

    def __repr__(self) -> str:
        return f"ContextState(id={self.id}, level={self.level}, node_score={self.node_score})"


class ContextGraph:
    """Aho-Corasick graph of phrases given as token-id sequences, scoring hypotheses as icefall's
    ``ContextGraph`` does in strict mode (every phrase occurrence counts, overlapping ones too).

    Args:
        bonus: the default per-token bonus (natural-log units added to the hypothesis score).
    """

    def __init__(self, bonus: float) -> None:
        self.bonus = float(bonus)
        self.root = ContextState(0, -1, 0.0, 0)
        self.root.fail = self.root
        self.nodes: list[ContextState] = [self.root]
        self.num_phrases = 0
        self._rows: dict[tuple[int, int, int], torch.Tensor] = {}

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    def build(
        self,
        token_ids: Iterable[Sequence[int]],
        phrases: Sequence[str] | None = None,
        scores: Sequence[float | None] | None = None,
    ) -> ContextGraph:
        """Add phrases to the trie and (re)compute scores, fail and output links.

        A node shared by several phrases gets the largest of their per-token bonuses (icefall's
        rule); unlike icefall, accumulated scores are computed after all insertions, so they do
        not depend on the order of the phrases. A phrase given twice is one phrase.

        Args:
            token_ids: each phrase as token ids (non-empty).
            phrases: their texts (kept on the end nodes; reported as matches).
            scores: per-phrase per-token bonus; ``None`` (or no list) = :attr:`bonus`.

        Returns:
            self.
        """
        for i, tokens in enumerate(token_ids):
            if not tokens:
                raise ValueError(f"ContextGraph.build: phrase {i} has no tokens")
            score = self.bonus if scores is None or scores[i] is None else float(scores[i])
            node = self.root
            for token in tokens:
                child = node.next.get(token)
                if child is None:
                    child = ContextState(len(self.nodes), int(token), score, node.level + 1)
                    self.nodes.append(child)
                    node.next[token] = child
                else:
                    child.token_score = max(child.token_score, score)
                node = child
            if not node.is_end:
                self.num_phrases += 1
            node.is_end = True
            if phrases is not None:
                node.phrase = phrases[i]
        self._fill_scores_and_links()
        return self

    def _fill_scores_and_links(self) -> None:
        """Breadth first from the root: a node's parent, fail and output nodes are shallower,
        hence final, when it is reached."""
        self._rows.clear()
        root = self.root
        queue: deque[ContextState] = deque()
        for node in root.next.values():
            node.node_score = node.token_score
            node.fail = root
            node.output = None
            node.output_score = node.node_score if node.is_end else 0.0
            queue.append(node)
        while queue:
            parent = queue.popleft()
            for token, node in parent.next.items():
                node.node_score = parent.node_score + node.token_score
                fail = parent.fail
                while token not in fail.next and fail is not root:
                    fail = fail.fail
                node.fail = fail.next.get(token, root)
                output = node.fail
                while not output.is_end and output is not root:
                    output = output.fail
                node.output = output if output.is_end else None
                node.output_score = (node.node_score if node.is_end else 0.0) + (
                    node.output.output_score if node.output is not None else 0.0
                )
                queue.append(node)

    def next_state(self, state: ContextState, token: int) -> ContextState:
        """The node after ``token``: ``state``'s child for it, else that of the first node on
        ``state``'s fail chain that has one, else the root."""
        node = state.next.get(token)
        if node is not None:
            return node
        node = state.fail
        while token not in node.next and node is not self.root:
            node = node.fail
        return node.next.get(token, self.root)

    def forward_one_step(
        self, state: ContextState, token: int
    ) -> tuple[float, ContextState, ContextState | None]:
        """One token from ``state``.

        Returns:
            ``(score, next_state, matched)``: ``score = next.node_score - state.node_score +
            next.output_score`` (a match gains the arc's bonus; a failed partial match gives back
            what its abandoned tokens earned beyond the fallback node; completed phrases earn
            their output score); ``matched`` is the node of the longest phrase ending at this
            token, or None.
        """
        node = self.next_state(state, token)
        score = node.node_score - state.node_score + node.output_score
        matched = node if node.is_end else node.output
        return score, node, matched

    def finalize(self, state: ContextState) -> tuple[float, ContextState]:
        """End of the utterance: give back the bonus of the current partial (or just completed)
        match. Returns ``(score, root)``."""
        return -state.node_score, self.root

    def step_scores(self, state: ContextState, vocab_size: int, blank_id: int) -> torch.Tensor:
        """The score of :meth:`forward_one_step` from ``state`` for every token id, blank = 0.

        Cached per node, so the search adds one row per hypothesis to the joiner's (K, V)
        log-probabilities instead of walking the graph K x V times per frame.

        Returns:
            (V,) float32.
        """
        key = (state.id, vocab_size, blank_id)
        row = self._rows.get(key)
        if row is None:
            row = self._goto_scores(state, vocab_size) - state.node_score
            row[blank_id] = 0.0
            row = row.float()
            self._rows[key] = row
        return row

    def _goto_scores(self, state: ContextState, vocab_size: int) -> torch.Tensor:
        """(V,) float64: ``node_score + output_score`` of the node each token leads to from
        ``state``. A token that is not a child's goes where it goes from the fail node, so the
        row is the fail node's row with this node's children written over it."""
        key = (state.id, vocab_size, -1)
        row = self._rows.get(key)
        if row is None:
            if state is self.root:
                row = torch.zeros(vocab_size, dtype=torch.float64)
            else:
                row = self._goto_scores(state.fail, vocab_size).clone()
            for tok, child in state.next.items():
                if 0 <= tok < vocab_size:
                    row[tok] = child.node_score + child.output_score
            self._rows[key] = row
        return row


# ---------------------------------------------------------------------------------------------
# Lexicons


@dataclass(frozen=True)
class Phrase:
    """One phrase of a lexicon: text, BPE token ids and where it was read (``file:line``)."""

    text: str
    tokens: tuple[int, ...]
    where: str


def read_lexicon(path: str | Path, max_phrases: int = MAX_PHRASES) -> list[tuple[str, str]]:
    """``(phrase, "file:line")`` of a phrase list (the one reader, :mod:`common.lexicon`; the
    counts are not used here).

    Raises:
        InputError: naming file:line for an empty line, more than one TAB, a count that is not
            a positive integer, a phrase listed twice, more than ``max_phrases`` phrases; a
            missing file or non-UTF-8 text.
    """
    return [(e.phrase, f"{path}:{e.lineno}") for e in read_lexicon_entries(path, max_phrases)]


def tokenize_phrases(entries: Iterable[tuple[str, str]], tok: Tokenizer) -> list[Phrase]:
    """BPE token ids of each ``(phrase, where)``; the later of two phrases with the same ids is
    skipped (counted, logged).

    Raises:
        InputError: naming ``where`` for a phrase that tokenises to nothing, to ``<unk>`` (its
            characters are not in the BPE model) or to a special symbol (``<blk>``...).
    """
    out: list[Phrase] = []
    seen: dict[tuple[int, ...], str] = {}
    skipped = 0
    for text, where in entries:
        ids = tuple(tok.encode(text))
        if not ids:
            raise InputError(f"{where}: phrase {text!r} tokenises to nothing with {tok.path}")
        unk = tok.sp.unk_id()
        if unk in ids:
            pieces = tok.sp.encode(text, out_type=str)
            bad = sorted({p for p, i in zip(pieces, ids, strict=True) if i == unk})
            raise InputError(
                f"{where}: phrase {text!r} has characters outside the BPE model {tok.path} "
                f"(read as <unk>: {bad}); normalise the lexicon like the transcripts"
            )
        if min(ids) < NUM_SPECIAL_IDS:
            raise InputError(f"{where}: phrase {text!r} contains a special symbol of {tok.path}")
        if ids in seen:
            skipped += 1
            logging.debug("%s: %r has the tokens of %s; skipped", where, text, seen[ids])
            continue
        seen[ids] = where
        out.append(Phrase(text, ids, where))
    if skipped:
        logging.warning(
            "%d phrase(s) skipped: same BPE tokens as an earlier phrase of the list", skipped
        )
    return out


def lexicon_files(path: str | Path) -> dict[str, Path]:
    """List name -> file: a file is one list named by its stem (``global.txt`` -> ``global``); a
    folder holds one list per ``*.txt`` file (other files, e.g. ``lexicons.json``, are ignored).

    Raises:
        InputError: the path is missing, or a folder without ``*.txt`` files.
    """
    path = Path(path)
    if path.is_file():
        return {path.name.split(".")[0]: path}
    if not path.is_dir():
        raise InputError(f"{path}: no such lexicon file or folder")
    files = {p.stem: p for p in sorted(path.glob("*.txt")) if p.is_file()}
    if not files:
        raise InputError(f"{path}: no <list>.txt lexicon files in this folder")
    return files


def _log_absent(lists_path: str | Path, utt_lists: dict, ids: list[str], has_global: bool) -> None:
    """Counts the utterances to decode that ``lists_path`` does not name (the documented rule
    gives them the global list, or no biasing): logged, and a warning when it names none of
    them (e.g. a map of the test set given with dev cuts)."""
    absent = sum(1 for u in ids if u not in utt_lists)
    if not ids or not absent:
        return
    fallback = f"the {GLOBAL_LIST!r} list" if has_global else "no biasing"
    msg = "%s: %d of %d utterances to decode are not in the map: %s"
    level = logging.WARNING if absent == len(ids) else logging.INFO
    logging.log(level, msg, lists_path, absent, len(ids), fallback)


@dataclass
class ContextBiasing:
    """The phrase lists of a decode and which of them bias each utterance.

    Rule: without a per-utterance map every utterance is biased with all lists; with one, an
    utterance is biased with the lists named on its line (none if the field is empty), and an
    utterance absent from the map with the ``global`` list if there is one, else not at all.
    One graph is built per distinct combination of lists, on first use, and cached.
    """

    lists: dict[str, list[Phrase]]
    bonus: float
    utt_lists: dict[str, tuple[str, ...]] | None = None
    graphs: dict[tuple[str, ...], ContextGraph | None] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        lexicon: str | Path,
        tok: Tokenizer,
        bonus: float,
        lists_path: str | Path | None = None,
        utt_ids: Iterable[str] = (),
        max_phrases: int = MAX_PHRASES,
    ) -> ContextBiasing:
        """Read and tokenise every list of ``lexicon`` (file or folder) and the map
        ``lists_path``; every error is raised here, before any decoding."""
        lists = {
            name: tokenize_phrases(read_lexicon(p, max_phrases), tok)
            for name, p in lexicon_files(lexicon).items()
        }
        for name, phrases in lists.items():
            if not phrases:
                logging.warning("context list %r (%s) is empty", name, lexicon)
        ids = list(utt_ids)  # read twice: by the map's check and by the count of the absent
        utt_lists = None if lists_path is None else read_context_map(lists_path, lists, ids)
        if utt_lists is not None:
            _log_absent(lists_path, utt_lists, ids, GLOBAL_LIST in lists)
        return cls(lists, bonus, utt_lists)

    def lists_for(self, utt_id: str) -> tuple[str, ...]:
        if self.utt_lists is None:
            return tuple(sorted(self.lists))
        if utt_id in self.utt_lists:
            return tuple(sorted(set(self.utt_lists[utt_id])))
        return (GLOBAL_LIST,) if GLOBAL_LIST in self.lists else ()

    def graph_for(self, utt_id: str) -> ContextGraph | None:
        """The graph of ``utt_id``'s lists (None: not biased)."""
        key = self.lists_for(utt_id)
        if key not in self.graphs:
            self.graphs[key] = self.build_graph(key)
        return self.graphs[key]

    def build_graph(self, names: Sequence[str]) -> ContextGraph | None:
        seen: set[tuple[int, ...]] = set()
        phrases: list[Phrase] = []
        for name in names:
            for p in self.lists[name]:
                if p.tokens not in seen:
                    seen.add(p.tokens)
                    phrases.append(p)
        if not phrases:
            return None
        graph = ContextGraph(self.bonus).build(
            [p.tokens for p in phrases], [p.text for p in phrases]
        )
        logging.info(
            "context graph %s: %d phrases, %d nodes", "+".join(names), len(phrases), graph.num_nodes
        )
        return graph

    def summary(self) -> dict:
        """For the decode summary: lists, phrase counts, graphs built."""
        return {
            "lists": {name: len(p) for name, p in sorted(self.lists.items())},
            "per_utterance_map": self.utt_lists is not None,
            "graphs": sorted("+".join(k) for k, g in self.graphs.items() if g is not None),
        }
