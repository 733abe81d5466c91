"""Whisper on any length of audio: cut at pauses, decode every piece as Whisper was trained, in parallel.

A clip of up to 30 s is one piece, decoded exactly as faster-whisper decodes it: the full 30 s
encoder window, timestamps, and its temperature fallback on repetitive or unlikely text. So
on short clips harken is never less accurate than faster-whisper on the same model; it is
faster because pieces run in parallel on single-threaded CTranslate2 workers.

Longer audio is cut at its pauses into pieces of at most 20 s (audio/segment.py). Whisper's own
long-form decoding slides its window and, on joined or noisy recordings, jumps over whole
utterances; a piece that starts at a pause does not. Each piece gets the same full-window
decoding as a short clip. Then two checks, on every piece:

- a piece that says a phrase again ("the most obvious? the most obvious?") is decoded again
  with faster-whisper's sampling fallback; the first answer without the repeat replaces it;
- a piece of a long clip that yields far fewer words per second than the clip's median was
  probably partly skipped: it is cut again at its shorter pauses and the sub-pieces are
  decoded; their text replaces the piece's when it holds clearly more words.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from harken.audio import SAMPLE_RATE
from harken.audio.segment import Cutter, Piece, true_runs
from harken.engines.base import EngineTranscript, OnProgress, TranscribeOptions
from harken.engines.whisper import fw_segment
from harken.results import Segment, TranscriptWarning

__all__ = ["SegmentedDecoder", "repeated_phrase"]

FULL_WINDOW_S = 30.0
# Pieces end at every pause (the cutter's default): packed several utterances to a window,
# Whisper skips a quiet one after a loud one (tests/test_segment.py), and no repair finds it.
PIECE_MAX_S = 20.0
LOW_RATE_RATIO = 0.8  # a piece this far under its clip's median word rate was partly skipped
MIN_RATE_CHECK_S = 4.0
REPAIR_GAIN = 1.15  # sub-pieces replace a piece when they hold this many times its words
COVER_MARGIN_S = 0.5  # Whisper's segment timestamps are this close to the speech they cover
MIN_GAP_SPEECH_S = 1.0  # less uncovered speech than this is a breath or a timestamp off by a little
MIN_WORD_S = 0.25  # the shortest spoken word worth a warning when a clip has no text at all
# faster-whisper's fallback ladder; the repeat check starts where its first rung (greedy) ends.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True)
class _Decoded:
    clip: int
    piece: Piece
    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments).strip()

    @property
    def word_count(self) -> int:
        return len(self.text.split())


class SegmentedDecoder:
    def __init__(self, model) -> None:  # a faster_whisper.WhisperModel
        self.model = model

    def transcribe(self, samples: np.ndarray, options: TranscribeOptions) -> EngineTranscript:
        return self.transcribe_many([samples], options)[0]

    def transcribe_many(
        self, clips: list[np.ndarray], options: TranscribeOptions, progress: Sequence[OnProgress | None] | None = None,
    ) -> list[EngineTranscript]:
        """Transcribe several clips with one set of options, their pieces sharing the workers.

        Every decision (cuts, repairs) is taken per clip, from that clip's own pieces and rates,
        never from the other clips decoded alongside. `progress` (one callback or None per clip)
        hears of each piece as its first decoding finishes, and of the whole clip at the end.
        """
        workers = self.model.model.num_workers
        cutters = [Cutter(c, workers=workers) for c in clips]
        plans = [c.pieces(max_len=PIECE_MAX_S) if c.duration > FULL_WINDOW_S else [Piece(0.0, c.duration)] for c in cutters]
        # A short clip lets faster-whisper detect its language as it always does; a long one is
        # detected once, on its first 30 s, so every piece is decoded in the same language.
        languages = [
            (options.language, None) if len(plan) == 1 else self._language(clip, options)
            for clip, plan in zip(clips, plans)
        ]
        jobs = [(i, p) for i, plan in enumerate(plans) for p in plan]
        with ThreadPoolExecutor(max(1, min(workers, len(jobs)))) as pool:
            tally = _Tally(cutters, progress)
            run = _Run(self.model, cutters, languages, options, pool, tally)
            decoded = run.decode(jobs)
            run.tally = None  # repairs re-decode audio already counted
            decoded = _repair(run, decoded)
        out = []
        for i, clip in enumerate(clips):
            pieces = [d for d in decoded if d.clip == i]
            segments = tuple(replace(s, id=k) for k, s in enumerate(s for d in pieces for s in d.segments))
            language, probability = languages[i]
            if language is None or probability is None:
                language, probability = run.detected.get(i, ("en", 1.0))
            out.append(EngineTranscript(segments, language, probability, _gap_warnings(cutters[i], pieces, segments)))
            tally.finish(i)
        return out

    def _language(self, samples: np.ndarray, options: TranscribeOptions) -> tuple[str, float]:
        if not self.model.model.is_multilingual:
            return "en", 1.0
        if options.language:
            return options.language, 1.0
        language, probability, _ = self.model.detect_language(samples[: int(FULL_WINDOW_S * SAMPLE_RATE)])
        return language, float(probability)


class _Run:
    """Pieces decoded with faster-whisper's own per-window decoding, spread over the workers."""

    def __init__(self, model, cutters: list[Cutter], languages, options: TranscribeOptions, pool, tally: _Tally | None) -> None:
        self.model, self.cutters, self.languages, self.options, self.pool = model, cutters, languages, options, pool
        self.tally = tally
        self.detected: dict[int, tuple[str, float]] = {}

    def decode(self, jobs: list[tuple[int, Piece]], temperatures: tuple[float, ...] | None = None) -> list[_Decoded]:
        # Longest pieces first, so the workers finish together.
        order = sorted(range(len(jobs)), key=lambda k: -jobs[k][1].duration)
        results = dict(zip(order, self.pool.map(lambda k: self._one(*jobs[k], temperatures), order)))
        return [results[k] for k in range(len(jobs))]

    def _one(self, clip: int, piece: Piece, temperatures: tuple[float, ...] | None) -> _Decoded:
        opts = self.options
        if temperatures is None:
            temperatures = FALLBACK_TEMPERATURES if opts.temperature == 0.0 else (opts.temperature,)
        segments, info = self.model.transcribe(
            piece.slice(self.cutters[clip].samples),
            language=self.languages[clip][0],
            task=opts.task,
            beam_size=opts.beam_size,
            temperature=list(temperatures),
            initial_prompt=opts.initial_prompt,
            word_timestamps=opts.word_timestamps,
            vad_filter=opts.vad_filter,
            max_new_tokens=opts.max_new_tokens,
        )
        out = tuple(fw_segment(s, 0, piece.start, piece.end) for s in segments if s.text.strip())
        if self.languages[clip][1] is None:
            self.detected[clip] = (info.language, float(info.language_probability))
        if self.tally is not None:
            self.tally.done(clip, piece)
        return _Decoded(clip, piece, out)


class _Tally:
    """Seconds of each clip decoded so far, told to the clip's progress callback (from any worker)."""

    def __init__(self, cutters: list[Cutter], progress: Sequence[OnProgress | None] | None) -> None:
        self.totals = [c.duration for c in cutters]
        self.progress = list(progress) if progress is not None else [None] * len(cutters)
        self.seconds = [0.0] * len(cutters)
        self.lock = threading.Lock()

    def done(self, clip: int, piece: Piece) -> None:
        if self.progress[clip] is None:
            return
        with self.lock:  # held while telling, so that no worker reports an older count after a newer one
            self.seconds[clip] += piece.duration
            self.progress[clip](min(self.seconds[clip], self.totals[clip]), self.totals[clip])

    def finish(self, clip: int) -> None:
        """The whole clip is done, repairs included."""
        if self.progress[clip] is not None:
            self.progress[clip](self.totals[clip], self.totals[clip])


def _repair(run: _Run, decoded: list[_Decoded]) -> list[_Decoded]:
    """Pieces that repeat a phrase are sampled again; partly skipped pieces are split and decoded again."""
    repeating = [i for i, d in enumerate(decoded) if repeated_phrase(d.text)]
    if repeating and run.options.temperature == 0.0:
        again = run.decode([(decoded[i].clip, decoded[i].piece) for i in repeating], FALLBACK_TEMPERATURES[1:])
        decoded = list(decoded)
        for i, d in zip(repeating, again):
            if d.text and not repeated_phrase(d.text):
                decoded[i] = d
    parts: list[tuple[int, Piece]] = []
    owner: list[int] = []
    for i in _slow_pieces(decoded):
        d = decoded[i]
        sub = run.cutters[d.clip].split(d.piece)
        if len(sub) > 1:  # a piece too short to split would only be decoded the same way again
            parts += [(d.clip, p) for p in sub]
            owner += [i] * len(sub)
    if not parts:
        return decoded
    return _replace(decoded, owner, run.decode(parts))


def _replace(decoded: list[_Decoded], owner: list[int], subs: list[_Decoded]) -> list[_Decoded]:
    """Each piece, or its sub-pieces where they hold clearly more words."""
    by_owner: dict[int, list[_Decoded]] = defaultdict(list)
    for i, d in zip(owner, subs):
        if d.text and not repeated_phrase(d.text):
            by_owner[i].append(d)
    out: list[_Decoded] = []
    for i, d in enumerate(decoded):
        replacement = by_owner.get(i)
        if replacement and sum(r.word_count for r in replacement) > REPAIR_GAIN * d.word_count:
            out += replacement
        else:
            out.append(d)
    return out


def _slow_pieces(decoded: list[_Decoded]) -> list[int]:
    """Pieces of a long clip with a word rate well below that clip's median: probably partly skipped.

    Whisper's segment timestamps do not show a skip (it stretches the next segment over the
    skipped speech), but the word rate does.
    """
    rates: dict[int, list[float]] = defaultdict(list)
    for d in decoded:
        if d.text and d.piece.duration >= 2.0:
            rates[d.clip].append(d.word_count / d.piece.duration)
    floors = {clip: LOW_RATE_RATIO * float(np.median(r)) for clip, r in rates.items() if len(r) >= 3}
    return [
        i for i, d in enumerate(decoded)
        if d.clip in floors
        and d.piece.duration >= MIN_RATE_CHECK_S
        and d.word_count / d.piece.duration < floors[d.clip]
    ]


def _gap_warnings(cutter: Cutter, pieces: list[_Decoded], segments: tuple[Segment, ...]) -> tuple[TranscriptWarning, ...]:
    """An `untranscribed_speech` warning for each stretch where the VAD hears speech and no text is.

    With no text at all, even a single short word counts (a spoken digit is 0.4 s).
    """
    least = MIN_GAP_SPEECH_S if segments else MIN_WORD_S
    gaps = [g for d in pieces for g in untranscribed(cutter, d.piece, d.segments, least)]
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


def repeated_phrase(text: str) -> str | None:
    """A phrase said twice: three or more words straight again, or four or more words anywhere again.

    Speakers do repeat themselves, but rarely a whole phrase word for word within seconds;
    a decoder stuck in a loop does it all the time. Shorter repeats ("I think I think", "ask
    not what ..., ask what") are normal speech and pass.
    """
    words = [w.lower() for w in _WORD.findall(text)]
    for n in range(3, len(words) // 2 + 1):
        for i in range(len(words) - 2 * n + 1):
            if words[i : i + n] == words[i + n : i + 2 * n]:
                return " ".join(words[i : i + n])
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - 3):
        gram = tuple(words[i : i + 4])
        if gram in seen:
            return " ".join(gram)
        seen.add(gram)
    return None
