"""Checks on a decoded window of Whisper's text, against the audio (engines/whisper_longform.py
decides what each finding costs): a phrase said again close by, more words than fit in the
time, speech the VAD hears that the text skipped or passed over, segments no one said, and
which of a window and its parts (the same audio decoded in smaller pieces) to keep.

Whisper's figures (log probability, compression, no-speech probability) are faster-whisper's
own gates; the rates and durations are what speech allows, not what one set of recordings does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from harken.audio.segment import Cutter, Piece, true_runs
from harken.results import Segment, TranscriptWarning

__all__ = [
    "Decoded", "better", "failed_gate", "gap_warnings", "heard", "passed_over_speech", "repeated_phrase", "skipped", "slow",
    "speech_inside_a_word", "unlooped_words", "untranscribed",
]

LOW_RATE_RATIO = 0.8  # a window this far under the median word rate around it was partly skipped
# The windows on either side a window's rate is judged against: about a minute of speech each
# way, so that a recording whose speakers differ in pace is judged locally, and a stream can
# tell a window's text once these few neighbours are decoded (not the whole clip).
RATE_NEIGHBOURS = 2
MIN_RATE_CHECK_S = 4.0
# Faster than the fastest sustained speech (about 4-5 words a second; 2.5-3 is usual).
MAX_WORDS_PER_S = 6.0
REPAIR_GAIN = 1.15  # sub-pieces replace a piece when they hold this many times its words
COVER_MARGIN_S = 0.5  # Whisper's segment timestamps are this close to the speech they cover
MIN_GAP_SPEECH_S = 1.0  # less uncovered speech than this is a breath or a timestamp off by a little
# The least speech worth a warning when a clip has no text at all: a short word. Silero scores
# a spoken digit over 0.5 for 0.1-0.5 s of its 0.3-0.6 s (FSDD); noise and a dog's bark, never.
MIN_WORD_S = 0.1
# The most speech one written word takes: about seven syllables at an ordinary pace. More speech
# inside one word, as Whisper's cross-attention times the words, is speech it wrote nothing for.
MAX_WORD_SPEECH_S = 1.5
# The speech a word takes at a slow pace: two syllables at three a second (an ordinary pace is
# 0.3-0.5 s of speech a word; on the dev joins no segment holds more than 0.6 s a word but a
# lone "1455.", 1.0 s).
SLOW_WORD_SPEECH_S = 0.7
LOGPROB_THRESHOLD = -1.0  # faster-whisper's log_prob_threshold: under it, a decoding has failed
COMPRESSION_THRESHOLD = 2.4  # faster-whisper's compression_ratio_threshold: over it, a decoding looped
NO_SPEECH_LIKELY = 0.5  # Whisper's no-speech probability over this: no speech is more likely than not


@dataclass(frozen=True)
class Decoded:
    """One piece of a clip (a window, or a part of one) as decoded, and what was found in it
    while its encoder output was at hand."""

    clip: int
    piece: Piece
    segments: tuple[Segment, ...]
    # Where Whisper passed over speech inside the window, if it did (passed_over_speech).
    passed_over: Piece | None = None
    # A phrase the text still says again close by after faster-whisper's fallback was tried.
    loop: str | None = None
    # How each segment is shown, where one is cut into parts a reader can follow
    # (engines/sentences.py): its parts, one tuple per segment. Every check judges `segments`,
    # Whisper's own; the parts hold the same text, timed by its words within the segment's time.
    phrases: tuple[tuple[Segment, ...], ...] | None = None

    @property
    def shown(self) -> tuple[Segment, ...]:
        """The segments as the transcript gives them."""
        return self.segments if self.phrases is None else tuple(p for parts in self.phrases for p in parts)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments).strip()

    @property
    def logprob(self) -> float:
        """The mean log probability per token over the piece's segments."""
        tokens = sum(max(1, len(s.tokens)) for s in self.segments)
        return sum(s.avg_logprob * max(1, len(s.tokens)) for s in self.segments) / max(1, tokens)

    @property
    def word_count(self) -> int:
        return len(self.text.split())

    @property
    def too_fast(self) -> bool:
        """More words than anyone speaks in the piece's time: Whisper looping over speech that
        really repeats itself (the repeat check cannot tell the two apart)."""
        return self.word_count > MAX_WORDS_PER_S * self.piece.duration

    @property
    def crowded_words(self) -> int:
        """Words of the segments holding more than anyone says in their time (timestamps given
        their slack): Whisper copying back, at a window's end, a sentence it wrote earlier in
        the window ("The narrative would be tedious to him and painful to myself." again, in
        0.7 s), while the window's rate as a whole is ordinary."""
        counts = [(len(s.text.split()), s.end - s.start + 2 * COVER_MARGIN_S) for s in self.segments]
        return sum(n for n, seconds in counts if n > MAX_WORDS_PER_S * seconds)


def heard(cutter: Cutter, decoded: Decoded, ladder: bool) -> Decoded:
    """The decoding without the segments that two detectors agree hold no speech.

    Whisper writes words into pauses, noise and a far-off room ("Okay. Okay. I'm sorry, let's
    do something else." over 20 s of a meeting room; "You" over a quiet end). faster-whisper
    drops a window only when its no-speech probability is high *and* its text failed the
    confidence gate. Here a segment goes when the VAD hears not a short word's worth of speech
    in its time and Whisper doubts it too: its text is a sample (with `ladder`, faster-whisper's
    temperature fallback: the first decoding failed its gates; "Okay. Okay. Okay. Just. Okay."
    at 0.4 passed them by 0.04), it failed the gates (unlikely or looping) after every rung, or
    Whisper itself rates no speech more likely than not. A segment of real speech the VAD
    misses but Whisper is sure of stays. (Whisper's figures are the decoding's, shared by all
    segments of one window: a window that is sure as a whole keeps every segment, one that is
    not loses only those the VAD hears nothing in.) A doubted segment without a word goes too,
    whatever the VAD hears: "..." sampled at 1.0 over the last syllable of a window says nothing.
    """
    keep = [
        not (_doubted(s, ladder) and (not _WORD.search(s.text) or not _speech_near(cutter, s, decoded.piece, decoded.segments)))
        for s in decoded.segments
    ]
    if all(keep):
        return decoded
    phrases = None if decoded.phrases is None else tuple(p for p, k in zip(decoded.phrases, keep) if k)
    return replace(decoded, segments=tuple(s for s, k in zip(decoded.segments, keep) if k), phrases=phrases)


def _doubted(segment: Segment, ladder: bool) -> bool:
    return (ladder and segment.temperature > 0.0) or failed_gate(segment) or segment.no_speech_prob > NO_SPEECH_LIKELY


def failed_gate(segment) -> bool:
    """faster-whisper's confidence gate on a decoding's figures (a segment, harken's or its own,
    carries its decoding's): too unlikely, or so repetitive that it looped."""
    return segment.avg_logprob < LOGPROB_THRESHOLD or segment.compression_ratio > COMPRESSION_THRESHOLD


def _speech_near(cutter: Cutter, segment: Segment, piece: Piece, others: Sequence[Segment] = ()) -> bool:
    """Whether the VAD hears a short word's worth of speech within the segment's time (widened
    by COVER_MARGIN_S: its timestamps are that close to the speech, but not past the piece it
    was decoded from) that none of the `others` (the segments around it) covers. A segment
    Whisper puts into the pause between two sentences otherwise takes theirs: "The letter used
    to be fine in form." sampled at 1.0 over the last 2 s of a dev join's window, silence,
    the speech within its margins all the sentence before it and the next window's first."""
    start = max(0.0, piece.start, segment.start - COVER_MARGIN_S)
    span = Piece(start, min(cutter.duration, piece.end, max(segment.end + COVER_MARGIN_S, start)))
    speech = cutter.speech(span)
    if not len(speech):
        return False
    fps = len(speech) / max(span.duration, 1e-9)
    for other in others:
        if other is not segment:
            speech[max(0, int((other.start - span.start) * fps)) : max(0, int((other.end - span.start) * fps))] = False
    return float(speech.sum()) / fps >= MIN_WORD_S


def passed_over_speech(
    cutter: Cutter, window: Piece, segments: list, align: Callable[[list[int]], list], *, stretch: bool = True,
) -> Piece | None:
    """Where a window passed over speech, if it did: timed word by word by cross-attention, its
    text holds more speech the VAD hears inside one word, or before the first or after the
    last, than a word takes. Asked of a window that joins recordings (spans a change of
    source), and, with `stretch`, of one with a segment that holds more speech than its words
    take (stretched).

    Whisper, done with one source, sometimes writes nothing for the next one in its window
    (a quiet FLEURS speaker after LJ Speech), and the segment around it stretches over it, so
    no stretch of speech is left without a segment. Timed word by word, the text jumps over
    it inside one word (a comma lasting 4.3 s, 2.9 s of it speech). `segments` are the
    window's text (faster-whisper's), `align` times tokens on its encoder output
    (WindowText.align).
    """
    joins = any(window.start + 1e-6 < c < window.end - 1e-6 for c in cutter.source_cuts)  # pieces start at changes
    tokens = [t for s in segments for t in s.tokens]
    if not tokens or not (joins or (stretch and stretched(cutter, window, segments))):
        return None
    return speech_inside_a_word(cutter, window, align(tokens))


def stretched(cutter: Cutter, window: Piece, segments: list) -> bool:
    """Whether a segment (faster-whisper's, times from the window's start) holds more speech
    the VAD hears than its words take at a slow pace, and a long word's more: then some word
    may hold speech Whisper wrote nothing for, which speech_inside_a_word tells.

    Whisper passes over speech inside a segment within one recording too, and where a second
    recording is about as loud as the first, no change of source is found ("then in the same
    operations with ugly ones." over 13.7 s of a dev join, 9.5 s of it speech: JFK's whole
    sentence among it; the most any other segment of the dev joins holds is 1.0 s a word)."""
    for s in segments:
        span = Piece(window.start + s.start, min(window.end, window.start + s.end))
        words = len(s.text.split())
        if span.duration > 0 and _speech_seconds(cutter, span) > SLOW_WORD_SPEECH_S * words + MAX_WORD_SPEECH_S:
            return True
    return False


def speech_inside_a_word(cutter: Cutter, window: Piece, words: Sequence[tuple[float, float]] | None) -> Piece | None:
    """Where the VAD hears more than a word's speech (MAX_WORD_SPEECH_S) inside one of `words`
    ((start, end) s from the window's start, each lasting until the next begins), or before
    the first or after the last: the first such span, if any. The longest words on the dev
    joins hold 1.1-1.3 s of speech ("fourteen fifty-five"); a long number written as one word
    can hold more, and costs only a repair that gives the same text. Words the model could not
    time (None) are taken to pass over speech anywhere in the window: it is decoded again in
    parts."""
    if words is None:
        return window
    if not words:
        return None
    edges = [(0.0, words[0][0]), *words, (words[-1][1], window.duration)]
    for start, end in edges:
        span = Piece(window.start + start, min(window.end, window.start + end))
        if span.duration > MAX_WORD_SPEECH_S and _speech_seconds(cutter, span) > MAX_WORD_SPEECH_S:
            return span
    return None


def _speech_seconds(cutter: Cutter, span: Piece) -> float:
    speech = cutter.speech(span)
    return float(speech.sum()) * span.duration / len(speech) if len(speech) else 0.0


def better(d: Decoded, subs: list[Decoded]) -> list[Decoded]:
    """A repaired piece, or its sub-pieces: where they hold clearly fewer words if the piece
    said more than fits in its time; else, against what the piece holds without its crowded
    segments and without its loop (a repeat that outlived the sampling fallback; its copy is
    often the crowded segment): where they hold no fewer if it passed over a source it joins
    (they are the windows that join none); where they hold about that much or more if it has
    crowded segments or a loop; else where they hold clearly more."""
    if d.too_fast:
        kept = [r for r in subs if r.text]
        return kept if kept and REPAIR_GAIN * sum(r.word_count for r in kept) < d.word_count else [d]
    held = d.word_count - d.crowded_words
    if d.loop:
        held = min(held, unlooped_words(d.text, d.loop))
    if d.passed_over:
        kept = [r for r in subs if r.text and not r.too_fast]
        return kept if kept and sum(r.word_count for r in kept) >= held else [d]
    if held < d.word_count:
        kept = [r for r in subs if r.text]
        return kept if kept and held <= REPAIR_GAIN * sum(r.word_count for r in kept) else [d]
    # A part may say a phrase twice because the audio does (a join of recordings can hold one
    # sentence twice, 10 s apart): only a part that says more than fits in its time looped.
    kept = [r for r in subs if r.text and not r.too_fast]
    if kept and sum(r.word_count for r in kept) > REPAIR_GAIN * d.word_count:
        return kept
    return [d]


def slow(cutter: Cutter, pieces: list[Decoded], k: int) -> bool:
    """Whether piece `k` of one clip's pieces (in time order) is far under the median word rate
    of the pieces up to RATE_NEIGHBOURS away (itself included; at least three with words).

    It must be slow both in words per second of the piece and in words per second of speech
    the VAD hears: pauses alone make a piece slow by the first, a slow and steady talker by
    the second; speech Whisper skipped lowers both. On the 11.9 min joins, 11 windows were
    slow by the first alone and 9 of them came out of their repair with the same words; both
    real skips were slow either way (0.55-0.63 of the median)."""
    d = pieces[k]
    if d.piece.duration < MIN_RATE_CHECK_S:
        return False
    near = [x for x in pieces[max(0, k - RATE_NEIGHBOURS) : k + RATE_NEIGHBOURS + 1] if x.text and x.piece.duration >= 2.0]
    if len(near) < 3:
        return False
    for seconds in (lambda x: x.piece.duration, lambda x: max(_speech_seconds(cutter, x.piece), 1e-3)):
        if d.word_count / seconds(d) >= LOW_RATE_RATIO * float(np.median([x.word_count / seconds(x) for x in near])):
            return False
    return True


def skipped(cutter: Cutter, d: Decoded) -> bool:
    """Whether a window leaves speech the VAD hears without words (Whisper, done with one
    speaker, sometimes ends the window before the next one speaks)."""
    return bool(untranscribed(cutter, d.piece, d.segments, MIN_GAP_SPEECH_S))


def gap_warnings(cutter: Cutter, pieces: list[Decoded], segments: tuple[Segment, ...]) -> tuple[TranscriptWarning, ...]:
    """An `untranscribed_speech` warning for each stretch where the VAD hears speech and no text
    is, or that Whisper passed over inside a segment (Decoded.passed_over).

    With no text at all, even a single short word counts (a spoken digit is 0.4 s).
    """
    least = MIN_GAP_SPEECH_S if segments else MIN_WORD_S
    gaps = [g for d in pieces for g in untranscribed(cutter, d.piece, d.segments, least)]
    # Speech a segment stretches over, as the window's words were timed, where no repair found words for it.
    gaps = sorted(gaps + [d.passed_over for d in pieces if d.passed_over], key=lambda g: g.start)
    return tuple(
        TranscriptWarning(
            "untranscribed_speech",
            f"speech from {g.start:.1f} s to {g.end:.1f} s has no words in the transcript",
            round(g.start, 3),
            round(g.end, 3),
        )
        for g in gaps
    )


def untranscribed(cutter: Cutter, piece: Piece, segments: tuple[Segment, ...], least: float) -> list[Piece]:
    """Stretches of a piece where the VAD hears at least `least` s of speech and no segment reaches.

    Segments cover their timestamps widened by COVER_MARGIN_S, so timestamp jitter at a
    segment's edge does not count.
    """
    speech = cutter.speech(piece)
    if not speech.any():
        return []
    fps = len(speech) / max(piece.duration, 1e-9)
    covered = np.zeros(len(speech), dtype=bool)
    for s in segments:
        a = max(0, int((s.start - piece.start - COVER_MARGIN_S) * fps))
        covered[a : int((s.end - piece.start + COVER_MARGIN_S) * fps) + 1] = True
    loose = speech & ~covered
    return [
        Piece(piece.start + a / fps, piece.start + b / fps)
        for a, b in _runs(loose, join=int(COVER_MARGIN_S * fps))
        if loose[a:b].sum() / fps >= least
    ]


def _runs(mask: np.ndarray, join: int) -> list[tuple[int, int]]:
    """Runs of True, merging runs fewer than `join` frames apart."""
    runs: list[list[int]] = []
    for a, b in true_runs(mask):
        if runs and a - runs[-1][1] < join:
            runs[-1][1] = b
        else:
            runs.append([a, b])
    return [(a, b) for a, b in runs]


_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def repeated_phrase(text: str) -> str | None:
    """The longest phrase said again close by: three or more words straight again, or four or
    more words again before twice their length of other words has passed.

    Speakers do repeat themselves, but rarely a whole phrase word for word within a breath; a
    decoder stuck in a loop copies what it has just said ("the most obvious? the most obvious?",
    "the conquest of Ireland. In 1173 occurred the conquest of Ireland."). A short phrase again
    after a stretch of other words is ordinary language ("in the middle of the 15th century ...
    even in the middle of a sentence"), and so are shorter repeats ("I think I think", "ask not
    what ..., ask what").
    """
    words = _words(text)
    best: list[str] = []
    for i in range(len(words)):
        for j in range(i + 3, len(words)):
            n = 0
            while j + n < len(words) and i + n < j and words[i + n] == words[j + n]:
                n += 1
            gap = j - (i + n)
            if n > len(best) and n >= 3 and (gap == 0 or (n >= 4 and gap < 2 * n)):
                best = words[i : i + n]
    return " ".join(best) or None


def unlooped_words(text: str, phrase: str) -> int:
    """How many words the text holds without its loops: every stretch said again straight after
    itself said once ("oh, oh, oh, oh" is one "oh"), and the phrase's later sayings dropped
    with all between them (a loop comes back through what it said before).

    Counted as Decoded.word_count counts, in words between spaces ("fifty-five" is one), though
    loops are found on the words repeated_phrase compares ("fifty", "five")."""
    words, owner = [], []  # each compared word, and which of the text's words it is part of
    bare = 0  # the text's words with nothing to compare ("--"): never part of a loop
    for k, token in enumerate(text.split()):
        found = _words(token)
        bare += not found
        words.extend(found)
        owner.extend([k] * len(found))
    for n in range(1, len(words) // 2 + 1):
        i = 0
        while i + 2 * n <= len(words):
            if words[i : i + n] == words[i + n : i + 2 * n]:
                del words[i + n : i + 2 * n], owner[i + n : i + 2 * n]
            else:
                i += 1
    gram = phrase.split()
    at = [i for i in range(len(words) - len(gram) + 1) if words[i : i + len(gram)] == gram]
    if at:
        del owner[at[0] : at[-1]]
    return len(set(owner)) + bare
