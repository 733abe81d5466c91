"""Live transcription: audio in as it arrives, turns, stable partial text and final transcripts out.

One `LiveSession` per stream (a realtime socket, a Wyoming client, `harken listen`), all on the
Service's per-model scheduler, so several streams share its workers and batching.

- Turns: with turn detection, Silero (audio/vad.py) opens an item at speech, keeping
  `prefix_padding_ms` before it, and commits it after `silence_duration_ms` of silence;
  without, the caller commits.
- Partials: while an item is open its audio is decoded again (greedy, the whole item, which is
  at most one 30 s window) every PARTIAL_EVERY_S of new audio; words on which two decodes in a
  row agree (case and punctuation aside) are told as a delta. Deltas only ever append. A partial is skipped while the
  model's queue holds other work, so under load finals go first and partials thin out.
- Finals: one decode of the whole item with the segmented path's rules (beam search,
  temperature fallback, repeat repair). It is the transcript; when its first words are those
  the deltas told, its other words are told as a last delta, so the deltas hold every word.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harken.audio.decode import SAMPLE_RATE, Audio
from harken.audio.vad import FRAME, SpeechProbability, TurnDetector
from harken.engines.base import check_range
from harken.errors import EmptyCommitError, HarkenError
from harken.results import Transcript

if TYPE_CHECKING:
    from harken.service import Service

__all__ = [
    "TurnDetection", "LiveOptions", "LiveSession", "LiveEvent", "SpeechStarted", "SpeechStopped",
    "Committed", "TextDelta", "Completed", "Failed", "listen",
]

PARTIAL_EVERY_S = 1.0
MAX_ITEM_S = 30.0  # an item this long is committed even without a pause: one Whisper window
CONTEXT_CHARS = 200  # of earlier items' text, given to the decoder as its prompt
_MIN_ITEM_S = 0.1  # a commit of less audio than this is refused (OpenAI's rule)


@dataclass(frozen=True)
class TurnDetection:
    """OpenAI's server_vad settings."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500

    def __post_init__(self) -> None:
        check_range("threshold", self.threshold, 0.0, 1.0)
        check_range("prefix_padding_ms", self.prefix_padding_ms, 0, 5000)
        check_range("silence_duration_ms", self.silence_duration_ms, 0, 10000)


@dataclass(frozen=True)
class LiveOptions:
    model: str | Path | None = None
    language: str | None = None
    prompt: str | None = None
    turn_detection: TurnDetection | None = TurnDetection()  # None: the caller commits
    partials: bool = True


@dataclass(frozen=True)
class SpeechStarted:
    item: str
    audio_start_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    item: str
    audio_end_ms: int


@dataclass(frozen=True)
class Committed:
    item: str
    previous_item: str | None


@dataclass(frozen=True)
class TextDelta:
    item: str
    delta: str


@dataclass(frozen=True)
class Completed:
    item: str
    transcript: Transcript


@dataclass(frozen=True)
class Failed:
    item: str | None  # None: the error is about the request, not an item (a commit of nothing)
    error: HarkenError


LiveEvent = SpeechStarted | SpeechStopped | Committed | TextDelta | Completed | Failed

_ids = itertools.count(1)


def _item_id() -> str:
    return f"item_{next(_ids):06d}"


class LiveSession:
    """Feed audio (float32 mono 16 kHz) with `append`; events go to `emit`, from the session's
    own thread, in order. `append`, `commit`, `clear` and `close` return at once."""

    def __init__(self, service: Service, options: LiveOptions, emit: Callable[[LiveEvent], None]) -> None:
        self.service, self.options, self.emit = service, options, emit
        self.entry = service.registry.resolve(options.model)  # a bad name fails here, before any audio
        service.registry.load(self.entry.name)
        turn = options.turn_detection
        self.vad = SpeechProbability() if turn is not None else None
        self.turns = TurnDetector(turn.threshold, turn.silence_duration_ms) if turn is not None else None
        self.commands: queue.SimpleQueue[tuple[str, np.ndarray | None]] = queue.SimpleQueue()
        self.audio: list[np.ndarray] = []  # the open item's audio (with turn detection: from its prefix)
        self.heard = 0  # samples received in all
        self.kept_from = 0  # the sample index self.audio starts at
        self.item: str | None = None  # the open item, once speech started (or audio came, without VAD)
        self.previous: str | None = None
        self.told = ""  # the open item's text told as deltas
        self.told_words = 0
        self.last_words: list[str] | None = None
        self.partial_at = 0  # samples in the item at the last partial decode
        self.working = False  # handling commands or decoding
        self.said: list[str] = []  # the final text of the session's items
        self.thread = threading.Thread(target=self._loop, name="harken-live", daemon=True)
        self.thread.start()

    # --- the caller's side ---------------------------------------------------------------------

    def append(self, samples: np.ndarray) -> None:
        self.commands.put(("append", np.asarray(samples, np.float32)))

    def commit(self) -> None:
        self.commands.put(("commit", None))

    def clear(self) -> None:
        self.commands.put(("clear", None))

    def close(self, *, finish: bool = True) -> None:
        """Stop; with `finish`, open speech is committed and transcribed first. Waits for the thread."""
        self.commands.put(("finish" if finish else "stop", None))
        self.thread.join()

    # --- the session's thread ------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nothing to do and nothing being done."""
        return not self.working and self.commands.empty()

    def _loop(self) -> None:
        while True:
            self.working = False
            batch = [self.commands.get()]
            self.working = True
            while True:  # everything that came meanwhile, so a slow decode never falls behind
                try:
                    batch.append(self.commands.get_nowait())
                except queue.Empty:
                    break
            for command, samples in batch:
                if command == "append":
                    self._append(samples)
                elif command == "commit":
                    self._commit(manual=True)
                elif command == "clear":
                    self._reset()
                else:
                    if command == "finish" and self.item is not None:
                        self._commit(manual=False)
                    return
            self._partial()

    def _append(self, samples: np.ndarray) -> None:
        self.heard += len(samples)
        self.audio.append(samples)
        if self.turns is None:
            if self.item is None and len(samples):
                self.item = _item_id()
            if self._item_samples() >= MAX_ITEM_S * SAMPLE_RATE:
                self._commit(manual=False)
            return
        for turn in self.turns.update(self.vad.feed(samples)):
            at = turn.frame * FRAME
            if turn.started:
                pad = int(self.options.turn_detection.prefix_padding_ms / 1000 * SAMPLE_RATE)
                self._keep_from(max(0, at - pad))
                self.item = _item_id()
                self.emit(SpeechStarted(self.item, _ms(self.kept_from)))
            elif self.item is not None:
                self.emit(SpeechStopped(self.item, _ms(at)))
                self._commit(manual=False, end=at)
        if self.item is None:  # silence: keep only what a prefix may need
            self._keep_from(max(0, self.heard - int(self.options.turn_detection.prefix_padding_ms / 1000 * SAMPLE_RATE)))
        elif self._item_samples() >= MAX_ITEM_S * SAMPLE_RATE:
            self.emit(SpeechStopped(self.item, _ms(self.heard)))
            self._commit(manual=False)

    def _keep_from(self, sample: int) -> None:
        if sample <= self.kept_from:
            return
        joined = np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)
        self.audio = [joined[sample - self.kept_from :]]
        self.kept_from = sample

    def _item_samples(self) -> int:
        return sum(len(a) for a in self.audio)

    def _commit(self, manual: bool, end: int | None = None) -> None:
        samples = np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)
        if end is not None:
            samples = samples[: max(0, end - self.kept_from)]
        if len(samples) < _MIN_ITEM_S * SAMPLE_RATE and manual:
            self.emit(Failed(None, EmptyCommitError(
                f"buffer too small: a commit needs at least {_MIN_ITEM_S * 1000:.0f} ms of audio, "
                f"the buffer holds {_ms(len(samples))} ms"
            )))
            return
        item = self.item or _item_id()
        if self.turns is not None:
            self.turns.reset()  # speech that goes on after a commit opens a new item
        self.emit(Committed(item, self.previous))
        self.previous = item
        told = self.told
        self._reset(keep_from=self.heard if end is None else end)
        if len(samples) == 0:
            return
        try:
            transcript = self.service.transcribe(
                Audio(samples, item, SAMPLE_RATE, 1, "pcm"), model=self.entry.name, use_cache=False,
                language=self.options.language, initial_prompt=self._context(),
            )
        except HarkenError as exc:
            self.emit(Failed(item, exc))
            return
        self.said.append(transcript.text)
        final = transcript.text.split()
        if _agreed(told.split(), final) == len(told.split()) and len(final) > len(told.split()):
            rest = " ".join(final[len(told.split()):])  # the deltas then hold every word of the final
            self.emit(TextDelta(item, (" " if told else "") + rest))
        self.emit(Completed(item, transcript))

    def _context(self) -> str | None:
        """The caller's prompt and the last items' text: an utterance cut from the speech around
        it is decoded as Whisper decodes a window of a long recording, after the text before it."""
        before = " ".join(self.said)[-CONTEXT_CHARS:].lstrip()
        joined = " ".join(t for t in (self.options.prompt, before) if t)
        return joined or None

    def _reset(self, keep_from: int | None = None) -> None:
        """Forget the open item; audio after `keep_from` (the part of a chunk past a turn's end) stays."""
        keep = self.heard if keep_from is None else keep_from
        joined = np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)
        self.audio = [joined[max(0, keep - self.kept_from) :]]
        self.kept_from = keep
        self.item, self.told, self.told_words, self.last_words, self.partial_at = None, "", 0, None, 0

    def _partial(self) -> None:
        """Decode the open item again and tell the words two decodes in a row agree on."""
        if not self.options.partials or self.item is None:
            return
        size = self._item_samples()
        if size - self.partial_at < PARTIAL_EVERY_S * SAMPLE_RATE:
            return
        if self.service.scheduler.queued().get(self.entry.name, 0) > 0:
            return  # other work waits: finals before partials
        self.partial_at = size
        samples = np.concatenate(self.audio)
        try:
            text = self.service.transcribe(
                Audio(samples, self.item, SAMPLE_RATE, 1, "pcm"), model=self.entry.name, use_cache=False,
                beam_size=1, language=self.options.language, initial_prompt=self._context(),
            ).text
        except HarkenError:
            return  # a partial is a preview; the final says what went wrong
        words = text.split()
        if self.last_words is not None:
            # Agreement ignores case and punctuation ("in" then "in,"), which move as words follow.
            agreed = _agreed(self.last_words, words)
            if agreed > self.told_words:
                delta = " ".join(words[self.told_words : agreed])
                self.emit(TextDelta(self.item, (" " if self.told else "") + delta))
                self.told += (" " if self.told else "") + delta
                self.told_words = agreed
        self.last_words = words


def _agreed(a: list[str], b: list[str]) -> int:
    """How many leading words two decodes share."""
    n = 0
    for x, y in zip(a, b):
        if _plain(x) != _plain(y):
            break
        n += 1
    return n


def _plain(word: str) -> str:
    return "".join(c for c in word.lower() if c.isalnum())


def _ms(samples: int) -> int:
    return int(samples * 1000 / SAMPLE_RATE)


def listen(
    service: Service, chunks: Iterable[np.ndarray], options: LiveOptions | None = None,
) -> Iterator[LiveEvent]:
    """Transcribe a stream of float32 mono 16 kHz chunks, yielding events as they happen.

    The chunks are read on a thread of their own (a microphone or pipe may block); at their end,
    open speech is committed and transcribed, and the iterator ends.
    """
    events: queue.SimpleQueue[LiveEvent | None] = queue.SimpleQueue()
    session = LiveSession(service, options or LiveOptions(), events.put)
    failure: list[BaseException] = []

    def feed() -> None:
        try:
            for chunk in chunks:
                session.append(chunk)
        except BaseException as exc:  # handed to the iterating caller
            failure.append(exc)
        finally:
            session.close(finish=not failure)
            events.put(None)

    feeder = threading.Thread(target=feed, name="harken-listen-feed", daemon=True)
    feeder.start()
    while (event := events.get()) is not None:
        yield event
    feeder.join()
    if failure:
        raise failure[0]
