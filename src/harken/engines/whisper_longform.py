"""Whisper on any length of audio: cut at pauses, decode every window as Whisper was trained, in parallel.

A clip of up to 30 s (one window of mel frames) is one piece in the full 30 s encoder window.
A clip of sentences is decoded untimed first (_Run._untimed: no timestamp tokens, each sentence
timed by its words), and where that text fails faster-whisper's confidence gate or leaves speech
the VAD hears without a sentence, exactly as faster-whisper decodes it: timestamps, and its
temperature fallback on repetitive or unlikely text. A clip of a word or two (under 2 s) is
decoded as faster-whisper decodes it, and heard with
0.4 s of quiet on either side, the quiet faster-whisper's own VAD keeps around speech (silence
is added where the clip has less). Trimmed tight to a lone word, Whisper mostly hears nothing
or a stock phrase ("Thank you."); with the margins it hears the word (FSDD digits, 45 clips:
faster-whisper 0.556 WER, 5 empty; with margins 0.40-0.47, 2-3 empty). And a clip whose speech
lies far under the level speech is recorded at (audio/level.py, too_quiet) is heard levelled,
as long audio is: Whisper's features carry absolute level, and such speech sits where its
training audio had only background (the read clips with peaks at -50 dBFS: faster-whisper
0.069 WER, levelled 0.044). Pieces run in parallel on single-threaded CTranslate2 workers.

Longer audio is cut at its pauses (audio/segment.py; any of 0.15 s or more), and consecutive
pieces are joined into windows of up to 28 s, as Whisper was trained: several utterances to a
window, with timestamps (as few windows as fit, ending at the longest pauses that allows).
Whisper's own long-form decoding slides its window and, on joined or noisy recordings, jumps
over whole utterances; a window that starts and ends at a pause does not. Before decoding, the
recording's loudness is evened out (audio/level.py): Whisper skips speech far quieter than the
rest. Pieces also end where the speech changes source (a join of recordings). A window may
join sources, as it joins utterances (fewer windows, more context), but even levelled,
Whisper sometimes passes over the second source of a shared window. The windows are decoded
several at a time by engines/whisper_window.py (faster-whisper's steps, one encoder pass per
window). Then checks on every window (engines/window_checks.py):

- a window that joins sources, or has a segment holding more speech than its words take, and
  whose text, timed word by word by Whisper's cross-attention (a quarter of an encoder pass),
  holds more speech inside one word than a word takes passed over speech: it is decoded again
  as windows that join none, or as its pieces, the one in which that speech follows other speech
  cut again at its shorter pauses; these replace it unless they hold fewer words, and speech still passed over gets an
  `untranscribed_speech` warning (word timestamps and faster-whisper's VAD option take
  faster-whisper's path, without this check, and a translation's words do not line up with
  the speech: there it is not made);

- a window that says a phrase again close by ("the most obvious? the most obvious?") is
  decoded again with faster-whisper's sampling fallback (a long clip's window on its own
  encoder output); the answer replaces it when it is confident, has no repeat, and drops no
  more than the loop (a short clip only when its text holds more words than fit in its time:
  otherwise a phrase said twice in one full window is a speaker's restart);
- a window of a long clip that yields far fewer words per second than the windows around it
  (per second of the window and per second of speech alike), or that leaves a second or more
  of speech the VAD hears without words, was probably partly skipped: the pieces it was packed
  from are decoded one by one (a window of one piece is cut again at its shorter pauses);
  their text replaces the window's when it holds clearly more words;
- a window with more words than fit in its time (over 6 a second) looped: it is cut and
  decoded the same way, and the parts replace it when they hold clearly fewer words;
- a window with one segment over that rate copied earlier text back: the parts replace it
  when they hold fewer words, but about as many as the window without that segment;
- a window repaired for any of these reasons that still says a phrase again after the
  sampling fallback (the sample was refused) is judged by its words without the loop, as
  one with a crowded segment is judged without that segment.

On every clip, short or long, a segment goes when the VAD hears no speech in its time and
Whisper doubts it too (window_checks.heard): Whisper writing words into a pause or a quiet room.
A window's segment longer than a subtitle cue is cut at its sentence ends and the speaker's
pauses, timed by the window's words (engines/sentences.py), as an untimed clip's sentences are.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from harken.audio import SAMPLE_RATE
from harken.audio.segment import Cutter, Piece, pack
from harken.cues import MAX_CUE_S
from harken.engines.base import EngineTranscript, OnProgress, OnText, TranscribeOptions, Watch
from harken.engines.sentences import phrases, sentences
from harken.engines.whisper import fw_segment
from harken.engines.whisper_window import Window, WindowText, clip_words, decode_windows, timed_words
from harken.engines.window_checks import (
    COVER_MARGIN_S, LOGPROB_THRESHOLD, MIN_GAP_SPEECH_S, RATE_NEIGHBOURS, REPAIR_GAIN, Decoded, better, failed_gate,
    gap_warnings, heard, passed_over_speech, repeated_phrase, skipped, slow, unlooped_words, untranscribed,
)

__all__ = ["SegmentedDecoder"]

FULL_WINDOW_S = 30.0
# A clip is long when it holds more than one window of Whisper's mel frames (3000 of 160
# samples): a 30 s excerpt a sample over, as recorders and dataset tools write them, is one
# window to faster-whisper too, and is decoded exactly as it decodes it.
_HOP = 160
_WINDOW_FRAMES = int(FULL_WINDOW_S * SAMPLE_RATE) // _HOP
PIECE_MAX_S = 20.0  # the cutter's pieces end at every pause, and at 20 s at the latest
# The shortest pause a piece may end at: a breath between phrases. Windows are packed from whole
# pieces, fewest first and then at the longest pauses, so shorter pauses only give the packing
# more places to end a window where the long pauses are too far apart to fill one: on the 11.9
# min dev joins, 30 / 29 / 31 windows against 32 / 34 / 37 with pauses of 0.3 s or more.
PIECE_MIN_PAUSE_S = 0.15
# Pieces are joined into windows this long at most: under Whisper's 30 s, so that the last
# word of a window is not at its edge, where the decoder's final timestamp would have to fall.
WINDOW_FILL_S = 28.0
# faster-whisper's fallback ladder; the repeat check starts where its first rung (greedy) ends.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# A clip this short is a word or two, often trimmed tight: it is heard with SHORT_MARGIN_S of
# quiet on either side (faster-whisper's VAD keeps that much, speech_pad_ms, around the speech it
# passes on), silence added where the clip has less (_margins). Only both sides together help: on
# the FSDD digits one side alone is worse than none, and on whole sentences any margin only moves
# words at random (measured in both directions).
SHORT_CLIP_S = 2.0
SHORT_MARGIN_S = 0.4
# Windows of one clip decoded in one call (engines/whisper_window.py): more to a call reads the
# output layer fewer times, but a call's windows wait for its longest text, and fewer calls
# balance worse over the workers. The three 11.9 min joins on 2 workers, in turns, summed:
# 4 a call 33.2-35.2 s, 6 a call 30.1-31.5 s; 5, 6 and 7 within the machine's drift of each other.
BATCH = 6


class SegmentedDecoder:
    def __init__(self, model) -> None:  # a faster_whisper.WhisperModel
        self.model = model

    def transcribe(self, samples: np.ndarray, options: TranscribeOptions) -> EngineTranscript:
        return self.transcribe_many([samples], options)[0]

    def transcribe_many(
        self, clips: list[np.ndarray], options: TranscribeOptions, watches: Sequence[Watch | None] | None = None,
    ) -> list[EngineTranscript]:
        """Transcribe several clips with one set of options, their pieces sharing the workers.

        Every decision (cuts, repairs) is taken per clip, from that clip's own pieces and rates,
        never from the other clips decoded alongside. A clip's Watch hears of each piece as its
        first decoding finishes (progress), and of its text as soon as no repair can change it.
        """
        workers = self.model.model.num_workers
        watches = list(watches) if watches is not None else [None] * len(clips)
        cutters = [Cutter(c, workers=workers) for c in clips]
        pieces = [
            c.pieces(max_len=PIECE_MAX_S, min_silence=PIECE_MIN_PAUSE_S) if _long(c) else [Piece(0.0, c.duration)]
            for c in cutters
        ]
        # A window may join pieces across a change of source where its text can be checked for
        # speech Whisper passed over there.
        checked = _words_timed(options)
        plans = [pack(p, WINDOW_FILL_S, [] if checked else c.source_cuts, c.pause) for p, c in zip(pieces, cutters)]
        # A short clip lets faster-whisper detect its language as it always does; a long one is
        # detected once, on its first 30 s, so every piece is decoded in the same language.
        languages = [
            (options.language, None) if len(plan) == 1 else self._language(clip, options)
            for clip, plan in zip(clips, plans)
        ]
        tally = _Tally(cutters, [w.progress if w else None for w in watches])
        listeners = [w.text if w else None for w in watches]
        run = _Run(self.model, cutters, languages, options)
        decoded = _Decoding(run, plans, pieces, tally, listeners).run(workers)
        out = []
        for i, clip in enumerate(clips):
            done = decoded[i]
            segments = tuple(replace(s, id=k) for k, s in enumerate(s for d in done for s in d.shown))
            language, probability = languages[i]
            if language is None or probability is None:
                language, probability = run.detected.get(i, ("en", 1.0))
            out.append(EngineTranscript(segments, language, probability, gap_warnings(cutters[i], done, segments)))
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
    """Pieces decoded with faster-whisper's own per-window decoding."""

    def __init__(self, model, cutters: list[Cutter], languages, options: TranscribeOptions) -> None:
        self.model, self.cutters, self.languages, self.options = model, cutters, languages, options
        self.detected: dict[int, tuple[str, float]] = {}

    def decode(self, clip: int, pieces: list[Piece], first: bool, tally: _Tally | None) -> list[Decoded]:
        """Decode pieces of one clip, windows of a long clip together (engines/whisper_window.py);
        in the `first` round a piece that repeats a phrase is sampled again at once."""
        if self.windowed(clip):
            found = self._windows(clip, pieces)
        else:
            found = [(self._decode(clip, p, None), partial(self._decode, clip, p)) for p in pieces]
        if tally is not None:
            for p in pieces:
                tally.done(clip, p)
        # A short clip keeps faster-whisper's text even where it says a phrase twice: in one full
        # window Whisper's own fallback handles loops, and a phrase said twice is mostly a
        # speaker's restart ("so we had a we had a long problem", AMI), which sampling drops.
        # Unless the text holds more words than fit in the clip: that much is a loop.
        check = _long(self.cutters[clip])
        return [
            heard(self.cutters[clip], self._unrepeated(d, again) if first and (check or d.too_fast) else d, self.ladder)
            for d, again in found
        ]

    @property
    def ladder(self) -> bool:
        """Whether decoding climbs faster-whisper's temperature ladder (the caller left the
        temperature at 0): then a sampled text is one the first decoding failed to give."""
        return self.options.temperature == 0.0

    def _unrepeated(self, decoded: Decoded, again: Callable[[tuple[float, ...]], Decoded]) -> Decoded:
        """A decoding that says a phrase again close by, sampled again (`again`) as faster-whisper's
        fallback would; the sampled text replaces it only when it passes every check below."""
        phrase = repeated_phrase(decoded.text) if self.ladder else None
        if phrase:
            sampled = again(FALLBACK_TEMPERATURES[1:])
            # Sampled text must also pass faster-whisper's own gate on confidence: speech that
            # really repeats itself (a chant, a read-out list) otherwise trades a true repeat
            # for a sampled guess. And it must drop the repeat, not the speech around it.
            kept = unlooped_words(decoded.text, phrase)
            if (sampled.text and not repeated_phrase(sampled.text) and sampled.logprob >= LOGPROB_THRESHOLD
                    and REPAIR_GAIN * sampled.word_count >= kept):
                return sampled
            return replace(decoded, loop=phrase)
        return decoded

    def windowed(self, clip: int) -> bool:
        """Whether a clip's windows take the batched window decoder: a long clip, in a known
        language, without word timestamps or faster-whisper's own VAD (those take its path)."""
        return _long(self.cutters[clip]) and self.languages[clip][0] is not None and _window_decoder_takes(self.options)

    def _windows(self, clip: int, pieces: list[Piece]) -> list[tuple[Decoded, Callable[[tuple[float, ...]], Decoded]]]:
        """Each window's decoding, and how to decode it again at other temperatures."""
        opts, cutter = self.options, self.cutters[clip]
        found = decode_windows(
            self.model, [Window(cutter.levelled(p), _speech_left(cutter, p)) for p in pieces],
            language=self.languages[clip][0], task=opts.task, beam_size=opts.beam_size,
            temperatures=self._temperatures(), initial_prompt=opts.initial_prompt, max_new_tokens=opts.max_new_tokens,
        )

        # A stretched segment is looked into only where words can be timed (a translation's windows join no sources either).
        stretch = _words_timed(opts)

        def decoded(p: Piece, w: WindowText, segments: list) -> Decoded:
            said = [s for s in segments if s.text.strip()]
            shown = self._phrased(clip, p.start, said, w.words) if stretch else None
            return Decoded(
                clip, p, tuple(fw_segment(s, 0, p.start, p.end) for s in said),
                passed_over_speech(cutter, p, segments, w.align, stretch=stretch),
                phrases=None if shown is None else tuple(tuple(fw_segment(x, 0, p.start, p.end) for x in parts)
                                                          for parts in shown),
            )

        return [(decoded(p, w, w.segments), lambda t, p=p, w=w: decoded(p, w, w.again(t))) for p, w in zip(pieces, found)]

    def _phrased(self, clip: int, at: float, segments: list, words_of: Callable[[list], list[list] | None],
                 keep_words: bool = False) -> list[list] | None:
        """How segments are shown: each as its parts, any that lasts longer than a subtitle cue
        cut at its sentence ends and the speaker's pauses (engines/sentences.py), timed by the
        words `words_of` gives for them (times from `at` s into the clip, as the
        segments' are); None where every segment stays as it is."""
        if self.options.task != "transcribe" or all(s.end - s.start <= MAX_CUE_S for s in segments):
            return None  # (a translation's words do not line up with the speech)
        words = words_of(segments)
        if words is None:
            return None
        pause = self._pause(clip, at)
        return [phrases(s, found, self.model.hf_tokenizer, pause, keep_words=keep_words)
                for s, found in zip(segments, words)]

    def _pause(self, clip: int, at: float) -> Callable[[float, float], float]:
        """The longest pause the VAD hears between two times s from `at` s into the clip."""
        cutter = self.cutters[clip]
        return lambda a, b: cutter.longest_pause(at + a, at + b)

    def _language(self, clip: int) -> str | None:
        """The clip's language: asked for, or detected once (None until then)."""
        return self.languages[clip][0] or self.detected.get(clip, (None, None))[0]

    def _temperatures(self) -> tuple[float, ...]:
        """faster-whisper's fallback ladder, or the one temperature the caller asked for."""
        return FALLBACK_TEMPERATURES if self.ladder else (self.options.temperature,)

    def _decode(self, clip: int, piece: Piece, temperatures: tuple[float, ...] | None) -> Decoded:
        opts = self.options
        if temperatures is None:
            temperatures = self._temperatures()
        cutter = self.cutters[clip]
        if _long(cutter):  # a long clip is heard levelled; its windows start and end at pauses
            samples, lead = cutter.levelled(piece), 0.0
        else:  # a short one as faster-whisper hears it (unless far too quiet); a word or two in a margin of quiet
            lead, tail = _margins(cutter) if cutter.duration < SHORT_CLIP_S else (0.0, 0.0)
            samples = cutter.as_heard(piece)
            if lead or tail:
                samples = np.concatenate([_silence(lead), samples, _silence(tail)])
        kwargs = dict(
            task=opts.task, beam_size=opts.beam_size, temperature=list(temperatures), initial_prompt=opts.initial_prompt,
            word_timestamps=opts.word_timestamps, vad_filter=opts.vad_filter, max_new_tokens=opts.max_new_tokens,
        )
        with self.model.kept_encoding():  # the untimed decoding's encoder output serves the timed one
            # (A word or two is decoded timed: untimed, 3 of the 45 FSDD digits came out wrong in
            # each of four runs, WER 0.467 against 0.400.)
            of_sentences = SHORT_CLIP_S <= cutter.duration and not _long(cutter)
            if of_sentences and tuple(temperatures) == FALLBACK_TEMPERATURES and _untimed_takes(opts):
                untimed = self._untimed(clip, piece, samples, lead, kwargs)
                if untimed is not None:
                    return untimed
            segments = [s for s in self._transcribe(clip, samples, kwargs) if s.text.strip()]
            own = [list(s.words or ()) for s in segments] if opts.word_timestamps and segments else None
            words_of = (lambda _: own) if own is not None else partial(self._words, clip, samples)
            shown = self._phrased(clip, piece.start - lead, segments, words_of, keep_words=own is not None)

        def placed(found) -> tuple:
            return tuple(fw_segment(s, 0, piece.start - lead, piece.end, piece.start) for s in found)

        return Decoded(clip, piece, placed(segments), phrases=None if shown is None else tuple(map(placed, shown)))

    def _words(self, clip: int, samples: np.ndarray, segments: list) -> list[list] | None:
        """Words for segments faster-whisper decoded from `samples`, aligned on the kept encoder
        output, where the samples are one window heard as decoded (faster-whisper's VAD option
        decodes only the speech it keeps)."""
        if self.options.vad_filter or len(samples) // _HOP > _WINDOW_FRAMES:
            return None
        return clip_words(self.model, samples, segments, language=self._language(clip) or "en", task=self.options.task)

    def _untimed(self, clip: int, piece: Piece, samples: np.ndarray, lead: float, kwargs: dict) -> Decoded | None:
        """A clip of one window decoded greedily without timestamps, its sentences timed by its
        words (faster-whisper's alignment); None where faster-whisper's own decoding should judge
        it: the text failed its confidence gate, or the VAD hears a second or more of speech
        that no sentence reaches (Whisper, untimed, has stopped before a meeting's last phrase).

        Whisper's short-form evaluations decode without timestamps: the timestamp tokens cost a
        small model words. faster-whisper on the development subsets, with timestamps against
        without: read English 0.055 / 0.047, 8 kHz 0.085 / 0.069, one-second keywords 0.625 /
        0.500, whisper-base multilingual 0.186 / 0.171."""
        # (Untimed, faster-whisper's word timestamps would move on to the audio after the last
        # word and decode it as a window of its own: "Thank you." twice after JFK's last word.)
        found = self._transcribe(clip, samples, {**kwargs, "temperature": [0.0], "without_timestamps": True,
                                                  "word_timestamps": False})
        if len(found) != 1:
            return None  # nothing heard (faster-whisper's no-speech gate): the timed ladder decides
        [segment] = found
        if failed_gate(segment):
            return None
        words = timed_words(self.model, samples, segment.tokens, language=self._language(clip), task=self.options.task)
        if not words:
            return None
        segment = replace(segment, words=words)
        at = piece.start - lead  # words are timed from `samples`' start
        parts = sentences(segment, self.model.hf_tokenizer, self._pause(clip, at), words=self.options.word_timestamps)
        out = tuple(fw_segment(s, 0, at, piece.end, piece.start) for s in parts if s.text.strip())
        if not out or untranscribed(self.cutters[clip], piece, out, MIN_GAP_SPEECH_S):
            return None
        return Decoded(clip, piece, out)

    def _transcribe(self, clip: int, samples: np.ndarray, kwargs: dict) -> list:
        """faster-whisper's segments for a clip, in its language (detected once per clip)."""
        language = self._language(clip)
        if language is None and self.model.model.is_multilingual and not self.options.vad_filter:
            # faster-whisper would encode the clip twice, to detect its language and to decode it
            segments, found, probability = self.model.detect_and_transcribe(samples, **kwargs)
            self.detected[clip] = (found, probability)
            return segments
        segments, info = self.model.transcribe(samples, language=language, **kwargs)
        if self.languages[clip][1] is None and clip not in self.detected:
            self.detected[clip] = (info.language, float(info.language_probability))
        return list(segments)


def _untimed_takes(options: TranscribeOptions) -> bool:
    """Whether a clip of one window is first decoded untimed: a transcript (a translation's words
    are not timed against the speech), on faster-whisper's ladder from temperature 0, without its
    VAD option (that cuts the clip itself)."""
    return options.task == "transcribe" and options.temperature == 0.0 and not options.vad_filter


def _words_timed(options: TranscribeOptions) -> bool:
    """Whether a window's text is timed word by word against its speech, for speech Whisper
    passed over: on the window decoder's path, and with a transcript (a translation's words do
    not line up with the speech they translate)."""
    return options.task == "transcribe" and _window_decoder_takes(options)


def _window_decoder_takes(options: TranscribeOptions) -> bool:
    """Whether these options let a long clip's windows take the batched window decoder: word
    timestamps and faster-whisper's own VAD take faster-whisper's path, window by window."""
    return not options.word_timestamps and not options.vad_filter


def _long(cutter: Cutter) -> bool:
    """Whether a clip is more than one Whisper window (it is cut into pieces and levelled)."""
    return len(cutter.samples) // _HOP > _WINDOW_FRAMES


def _speech_left(cutter: Cutter, piece: Piece):
    """For a window: given where its text ends (s from its start), where speech without words
    starts after that, if a second or more of it is left (else None)."""

    def at(text_end: float) -> float | None:
        rest = Piece(min(piece.end, piece.start + text_end + COVER_MARGIN_S), piece.end)
        gaps = untranscribed(cutter, rest, (), MIN_GAP_SPEECH_S) if rest.duration > 0 else []
        return gaps[0].start - piece.start if gaps else None

    return at


def _margins(cutter: Cutter) -> tuple[float, float]:
    """The silence (s) a short clip is heard with before and after it: what it lacks of
    SHORT_MARGIN_S of quiet around the speech the VAD hears. A digit trimmed tight gets most of
    it; a keyword recorded in a second of room tone, little or none. Silence beyond that only
    costs Whisper confidence: with the full margins added, 4 of the 8 one-second Speech
    Commands keywords failed faster-whisper's confidence gate at every temperature (six
    decodings each, the words no better); with these, 1. A clip the VAD hears no speech in
    gets all of it."""
    speech = cutter.speech(Piece(0.0, cutter.duration))
    heard = np.flatnonzero(speech)
    if not len(heard):
        return SHORT_MARGIN_S, SHORT_MARGIN_S
    frame = cutter.duration / len(speech)
    return max(0.0, SHORT_MARGIN_S - heard[0] * frame), max(0.0, SHORT_MARGIN_S - (len(speech) - 1 - heard[-1]) * frame)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), np.float32)


class _Tally:
    """Seconds of each clip decoded so far, told to the clip's progress callback (from any worker)."""

    def __init__(self, cutters: list[Cutter], progress: Sequence[OnProgress | None]) -> None:
        self.totals = [c.duration for c in cutters]
        self.progress = list(progress)
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


@dataclass(frozen=True)
class _Job:
    clip: int
    index: int  # the piece's place in its clip's plan
    piece: Piece
    first: bool  # a first decoding (else a sub-piece of a slow piece)
    part: int = 0  # which sub-piece


class _Decoding:
    """Every piece decoded, repaired, and told in order, on `workers` threads.

    A piece is judged as soon as its RATE_NEIGHBOURS on either side are decoded: if slow, its
    sub-pieces are decoded next, before any first decoding still waiting; otherwise it is
    final. Each clip's listener hears the final pieces' text in order as they become final, so
    what is told early is exactly what the finished transcript says.
    """

    def __init__(
        self, run: _Run, plans: list[list[Piece]], pieces: list[list[Piece]], tally: _Tally, listeners: Sequence[OnText | None],
    ) -> None:
        self.runner, self.plans, self.tally, self.listeners = run, plans, tally, list(listeners)
        self.packed = pieces  # the cutter's pieces each clip's windows were packed from
        self.first: list[dict[int, Decoded]] = [{} for _ in plans]
        self.final: list[dict[int, list[Decoded]]] = [{} for _ in plans]
        self.subs: dict[tuple[int, int], list[Decoded | None]] = {}
        self.told = [0] * len(plans)  # each clip's first piece not yet told
        self.said = [False] * len(plans)  # whether a clip's listener heard any text yet
        jobs = [_Job(i, k, p, True) for i, plan in enumerate(plans) for k, p in enumerate(plan)]
        if not any(self.listeners):  # longest pieces first, so the workers finish together
            jobs.sort(key=lambda j: -j.piece.duration)  # (told in order, the start comes first)
        self.waiting: deque[_Job] = deque(jobs)
        self.repairs: deque[_Job] = deque()

    def run(self, workers: int) -> list[list[Decoded]]:
        size = max(1, min(workers, len(self.waiting)))
        with self.runner.model.streams(size), ThreadPoolExecutor(size) as pool:
            running: dict[Future, list[_Job]] = {}
            while self.waiting or self.repairs or running:
                while len(running) < size and (self.repairs or self.waiting):
                    jobs = self._next(self.repairs if self.repairs else self.waiting, size)
                    tally = self.tally if jobs[0].first else None
                    running[pool.submit(self.runner.decode, jobs[0].clip, [j.piece for j in jobs], jobs[0].first, tally)] = jobs
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    for job, d in zip(running.pop(future), future.result(), strict=True):
                        self._arrived(job, d)
        return [[d for k in range(len(plan)) for d in self.final[i][k]] for i, plan in enumerate(self.plans)]

    def _next(self, queue: deque[_Job], workers: int) -> list[_Job]:
        """The next jobs to decode together: up to BATCH windows of one long clip from the head of
        `queue`, and no more than a share of what is left for each of the `workers`. (Shared out
        among the workers idle at the time, a queue's last windows went to one worker in a long
        call while the other finished early and waited: on the 11.9 min joins, 1 s of 12.) A
        clip whose text is told as it comes is decoded a window at a time, so that its first
        words come early."""
        first = queue.popleft()
        jobs = [first]
        batched = self.runner.windowed(first.clip) and self.listeners[first.clip] is None
        room = min(BATCH, max(1, -(-(len(queue) + 1) // workers))) if batched else 1
        for job in list(queue):
            if len(jobs) >= room:
                break
            if job.clip == first.clip:
                queue.remove(job)
                jobs.append(job)
        return jobs

    def _arrived(self, job: _Job, d: Decoded) -> None:
        clip = job.clip
        if job.first:
            self.first[clip][job.index] = d
            n = len(self.plans[clip])
            for k in range(max(0, job.index - RATE_NEIGHBOURS), min(n, job.index + RATE_NEIGHBOURS + 1)):
                self._judge(clip, k)
        else:
            self.subs[clip, job.index][job.part] = d
            self._settle(clip, job.index)
        self._tell(clip)

    def _judge(self, clip: int, k: int) -> None:
        """Piece k is final, or has its sub-pieces queued, once it and its neighbours are decoded."""
        n = len(self.plans[clip])
        near = range(max(0, k - RATE_NEIGHBOURS), min(n, k + RATE_NEIGHBOURS + 1))
        if k in self.final[clip] or (clip, k) in self.subs or any(j not in self.first[clip] for j in near):
            return
        d, cutter = self.first[clip][k], self.runner.cutters[clip]
        # A short clip is decoded as faster-whisper decodes it and left so (it has no
        # neighbours to be slow against either).
        long = _long(cutter)
        # (A window still saying a phrase twice after the sampling fallback is not repaired for
        # that alone: the audio may say it twice, as a join holding one recording twice does.)
        wrong = long and (d.too_fast or d.crowded_words or d.passed_over or skipped(cutter, d))
        if slow(cutter, [self.first[clip][j] for j in near], k - near.start) or wrong:
            sub = self._parts(clip, d)
            if len(sub) > 1:  # a piece too short to split would only be decoded the same way again
                self.subs[clip, k] = [None] * len(sub)
                for part, p in enumerate(sub):
                    if not cutter.speech(p).any():  # a pause at the window's edge: nothing to hear
                        self.subs[clip, k][part] = Decoded(clip, p, ())
                    else:
                        self.repairs.append(_Job(clip, k, p, False, part))
                self._settle(clip, k)
                return
        self.final[clip][k] = [d]

    def _settle(self, clip: int, k: int) -> None:
        """Window k is final once every part of its repair is decoded (or had nothing to hear)."""
        parts = self.subs[clip, k]
        if all(p is not None for p in parts):
            self.final[clip][k] = better(self.first[clip][k], parts)

    def _parts(self, clip: int, d: Decoded) -> list[Piece]:
        """What a window that went wrong is decoded as instead: the pieces it was packed from
        (Whisper skips or loops over whole utterances, and each piece ends at a pause), or a
        single piece cut again at its shorter pauses. A window that passed over a source it
        joins is packed again as windows that join none; one that passed over speech within
        one source has the piece in which that speech follows other speech cut again at its
        shorter pauses (decoded on its own, Whisper passed over JFK after LJ Speech again)."""
        window, cutter = d.piece, self.runner.cutters[clip]
        inside = [p for p in self.packed[clip] if window.start - 1e-6 <= p.start and p.end <= window.end + 1e-6]
        if d.passed_over:
            unjoined = pack(inside, WINDOW_FILL_S, cutter.source_cuts, cutter.pause)
            if len(unjoined) > 1:
                return unjoined
            # Decoded on its own, a piece still starts with the speech Whisper went on from: the
            # piece in which the passed-over speech follows other speech is cut again.
            after = d.passed_over.start
            inside = [q for p in inside for q in (cutter.split(p) if p.start + COVER_MARGIN_S < after < p.end else [p])]
        return inside if len(inside) > 1 else cutter.split(window)

    def _tell(self, clip: int) -> None:
        listener = self.listeners[clip]
        while self.told[clip] in self.final[clip]:
            for d in self.final[clip][self.told[clip]]:
                if listener is not None and d.text:
                    listener((" " if self.said[clip] else "") + d.text)
                    self.said[clip] = True
            self.told[clip] += 1


