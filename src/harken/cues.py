"""Subtitle cues from a transcript's segments: short enough to read, broken where speech breaks.

A cue holds at most MAX_CUE_S seconds and MAX_LINES lines of MAX_LINE_CHARS characters (the
usual broadcast and streaming limits). A segment longer than that is cut into several cues,
preferably after a sentence end, else after a comma, else where it must be; no cue spans two
segments. Word timestamps place the cuts when the transcript has them; otherwise each word is
given a share of its segment's time in proportion to its length. Cue texts, read in order,
are exactly the transcript's text. With `speaker_tags`, each cue of a diarized segment begins
"[A] " (SubRip has no voice markup), counted within the line limits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from harken.results import Segment

__all__ = ["Cue", "cues", "wrap", "MAX_CUE_S", "MAX_LINE_CHARS", "MAX_LINES"]

MAX_CUE_S = 7.0
MAX_LINE_CHARS = 42
MAX_LINES = 2
_SENTENCE_END = (".", "?", "!", "。", "？", "！", "…")
_CLAUSE_END = (",", ";", ":", "，", "、", "—")


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None = None

    @property
    def text(self) -> str:
        return " ".join(self.lines)


@dataclass(frozen=True)
class _Word:
    text: str
    start: float
    end: float
    spaced: bool = True  # a space before it ("self-substantial" comes as "self" and "-substantial")


def _join(words: list[_Word]) -> str:
    return "".join((" " if w.spaced else "") + w.text for w in words).strip()


def cues(segments: tuple[Segment, ...], *, speaker_tags: bool = False) -> list[Cue]:
    """Cues in time order that never overlap, whatever times the decoder produced."""
    out: list[Cue] = []
    last_end = 0.0
    for seg in segments:
        tag = f"[{seg.speaker}] " if speaker_tags and seg.speaker else ""
        for group in _split(_words(seg), tag):
            start = max(group[0].start, last_end)
            end = max(group[-1].end, start + 0.001)
            text = tag + _join(group)
            out.append(Cue(round(start, 3), round(end, 3), wrap(text) or (text,), seg.speaker))
            last_end = end
    return out


def wrap(text: str) -> tuple[str, ...] | None:
    """The text on at most MAX_LINES lines of MAX_LINE_CHARS, balanced, or None if it cannot fit."""
    if len(text) <= MAX_LINE_CHARS:
        return (text,)
    best: tuple[float, int] | None = None
    for i, ch in enumerate(text):
        if ch != " ":
            continue
        first, second = text[:i], text[i + 1 :]
        if len(first) > MAX_LINE_CHARS or len(second) > MAX_LINE_CHARS:
            continue
        # Balanced lines read best; a break after punctuation reads better still.
        cost = abs(len(first) - len(second)) - (8 if first.endswith(_SENTENCE_END + _CLAUSE_END) else 0)
        if best is None or cost < best[0]:
            best = (cost, i)
    if best is None:
        return None
    return (text[: best[1]], text[best[1] + 1 :])


def _words(seg: Segment) -> list[_Word]:
    if seg.words:
        words = [_Word(w.word.strip(), w.start, w.end, w.word[:1].isspace()) for w in seg.words if w.word.strip()]
        return [replace(words[0], spaced=True), *words[1:]] if words else []
    texts = seg.text.split()
    total = sum(len(t) + 1 for t in texts) or 1
    out, at = [], seg.start
    for t in texts:
        share = (seg.end - seg.start) * (len(t) + 1) / total
        out.append(_Word(t, at, at + share))
        at += share
    return out


def _fits(group: list[_Word], tag: str) -> bool:
    text = tag + _join(group)
    return group[-1].end - group[0].start <= MAX_CUE_S and wrap(text) is not None


def _split(words: list[_Word], tag: str = "") -> list[list[_Word]]:
    """Consecutive groups that each fit a cue, cut at the most natural point that keeps them fitting."""
    groups: list[list[_Word]] = []
    rest = words
    while rest:
        n = 1
        while n < len(rest) and _fits(rest[: n + 1], tag):
            n += 1
        if n < len(rest):
            n = _best_break(rest[:n], rest[n:], tag)
        while 1 < n < len(rest) and not rest[n].spaced:  # never inside a hyphenated word
            n -= 1
        groups.append(rest[:n])
        rest = rest[n:]
    return groups


def _best_break(group: list[_Word], after: list[_Word], tag: str) -> int:
    """How many words of a full group to keep: up to a sentence end or comma in its second half;
    else, where what is left would fit one more cue, as evenly as both can be (filled to the
    last word that fits, "... by a similar" left "process." a cue of its own)."""
    half = len(group) // 2
    for ends in (_SENTENCE_END, _CLAUSE_END):
        for k in range(len(group), max(half, 1) - 1, -1):
            if group[k - 1].text.endswith(ends):
                return k
    whole = group + after
    evens = [k for k in range(1, len(group) + 1) if _fits(whole[k:], tag)]
    return min(evens, key=lambda k: abs(len(_join(whole[:k])) - len(_join(whole[k:]))), default=len(group))
