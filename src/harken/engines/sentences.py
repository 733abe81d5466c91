"""Segments a reader can follow: an untimed decoding's text one per sentence, each timed by
its words, and a timed segment too long for a subtitle cue cut the same way.

Whisper decoded without timestamp tokens gives one text for its window. Its words are timed by
faster-whisper's alignment (engines/whisper_window.py, timed_words), and each sentence becomes
a segment from its first word to its last. A sentence longer than a subtitle cue may last
(cues.MAX_CUE_S) is cut where the speaker pauses longest, as Whisper's own timestamps would
have cut it: a cue cut at a share of the text's length ended mid-phrase ("what your country
can | do for you", "may justly | be considered") at times no word was said. Whisper's own
timestamps, on long audio, also give segments of up to 12 s now and then (7 of 78 on 5 min
of the joined read clips); those are cut the same way (`phrases`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from harken.cues import MAX_CUE_S

__all__ = ["phrases", "sentences"]

_SENTENCE_END = (".", "?", "!", "。", "？", "！")
_CLAUSE_END = (",", ";", ":", "，", "、")
# A pause shorter than this is a breath within a phrase, no place to cut (the cutter's own
# shortest pause between pieces, whisper_longform.PIECE_MIN_PAUSE_S).
MIN_PAUSE_S = 0.15
MIN_PART_S = 1.0  # no part of a cut sentence shorter than this: a word or two is no cue


def sentences(segment, tokenizer, pause: Callable[[float, float], float], *, words: bool) -> list:
    """A faster-whisper segment with words, cut into one per sentence (or part of one, above),
    each timed by its words and keeping them if `words`. `pause(a, b)` is the longest pause (s)
    in the audio between a and b s."""
    groups, group = [], []
    timed = list(segment.words)
    for i, w in enumerate(timed):
        group.append(w)
        # A sentence ends before a spaced word: in a language written without spaces the
        # transcript joins its segments with one, which its text does not have.
        if w.word.strip().endswith(_SENTENCE_END) and (i + 1 == len(timed) or timed[i + 1].word[:1].isspace()):
            groups.append(group)
            group = []
    if group:
        groups.append(group)
    out = []
    for part in (p for g in groups for p in _readable(g, pause)):
        text = "".join(w.word for w in part)
        out.append(replace(segment, start=part[0].start, end=part[-1].end, text=text,
                           tokens=tokenizer.encode(text, add_special_tokens=False).ids, words=list(part) if words else None))
    return out


def phrases(segment, words: list, tokenizer, pause: Callable[[float, float], float], *,
            keep_words: bool = False) -> list:
    """A timed segment that lasts longer than a cue, timed by its `words` (in the same clock;
    kept on the parts if `keep_words`) and cut as `sentences` cuts. Whisper's timestamps can
    hold long quiet: a meeting's segment began 16 s before its first word. The parts meet where
    the next one's first word starts, within the segment's own times; the segment as it is
    where its words cannot time it."""
    if segment.end - segment.start <= MAX_CUE_S or not words:
        return [segment]
    if "".join(w.word for w in words).strip() != segment.text.strip():
        return [segment]  # (words from a joint alignment may have taken a mark from the next segment)
    parts = sentences(replace(segment, words=words), tokenizer, pause, words=keep_words)
    if " ".join(p.text.strip() for p in parts) != segment.text.strip():
        return [segment]  # (the transcript joins segments with a space: its text must not change)
    if len(parts) == 1:
        parts = [replace(segment, words=words if keep_words else segment.words)]

    def within(t: float) -> float:
        return min(max(t, segment.start), segment.end)

    starts = [within(words[0].start)] + [within(p.start) for p in parts[1:]]
    # A part runs on to where the next begins, unless the pause after it would make it longer than a cue.
    ends = [b if b - a <= MAX_CUE_S else within(p.end) for p, a, b in zip(parts, starts, starts[1:])]
    ends.append(within(words[-1].end))
    if any(b - a < MIN_PART_S / 2 for a, b in zip(starts, ends)):
        return [segment]  # (alignment put words past Whisper's own times)
    return [replace(p, start=a, end=b) for p, a, b in zip(parts, starts, ends)]


def _readable(group: list, pause: Callable[[float, float], float]) -> list[list]:
    """A sentence as parts of at most MAX_CUE_S, cut at its longest pause (measured between the
    middles of the words either side: alignment gives a pause to one of them), else after a
    comma, else at the middle; no part under MIN_PART_S."""
    if group[-1].end - group[0].start <= MAX_CUE_S:
        return [group]
    start, end = group[0].start, group[-1].end
    # Only between words ("well-known" and "1,000" come as two words, the second unspaced; so
    # do the words of a language written without spaces, whose sentences are left whole).
    cuts = [i for i in range(1, len(group)) if group[i].word.startswith(" ")
            and group[i].start - start >= MIN_PART_S and end - group[i - 1].end >= MIN_PART_S]
    if not cuts:
        return [group]
    middle = (start + end) / 2

    quiet = {i: pause((group[i - 1].start + group[i - 1].end) / 2, (group[i].start + group[i].end) / 2) for i in cuts}

    def off_middle(i: int) -> float:
        return abs(group[i].start - middle)

    paused = [i for i in cuts if quiet[i] >= MIN_PAUSE_S]
    clauses = [i for i in cuts if group[i - 1].word.strip().endswith(_CLAUSE_END)]
    if paused:
        k = max(paused, key=lambda i: (quiet[i], -off_middle(i)))
    else:
        k = min(clauses or cuts, key=off_middle)
    return _readable(group[:k], pause) + _readable(group[k:], pause)
