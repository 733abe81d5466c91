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
  temperature fallback, repeat repair). It is the transcript; its words after those the
  deltas told are told as a last delta, so the deltas end as the final does.
"""

from __future__ import annotations

import difflib
import itertools
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harken.audio.decode import SAMPLE_RATE, Audio
from harken.audio.vad import FRAME, SpeechProbability, TurnDetector
from harken.engines.base import check_range
from harken.errors import EmptyCommitError, HarkenError, LiveSessionError
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


@dataclass
class _Final:
    """A committed item: its audio, the text told for it so far, and its decode once submitted."""

    item: str
    samples: np.ndarray
    told: str
    future: Future | None = None


class LiveSession:
    """Feed audio (float32 mono 16 kHz) with `append`; events go to `emit`, from the session's
    own thread, in order. `append`, `commit`, `clear` and `close` return at once.

    The session's thread never waits for a decode: decodes are queued on the scheduler and
    their results come back as commands, so turns are seen as the audio arrives. Finals are
    decoded one at a time, in order, each after the one before (its text is the next one's
    prompt); a final is decoded as soon as its audio is complete, which with turn detection
    is `tail` after the speech ends, while the rest of the silence that ends the turn arrives.
    If speech resumes first, that decode is dropped.
    """

    def __init__(self, service: Service, options: LiveOptions, emit: Callable[[LiveEvent], None]) -> None:
        self.service, self.options, self.emit = service, options, emit
        self.entry = service.registry.resolve(options.model)  # a bad name fails here, before any audio
        service.registry.load(self.entry.name)
        turn = options.turn_detection
        self.vad = SpeechProbability() if turn is not None else None
        self.turns = TurnDetector(turn.threshold, turn.silence_duration_ms) if turn is not None else None
        self.commands: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self.audio: list[np.ndarray] = []  # the open item's audio (with turn detection: from its prefix)
        self.heard = 0  # samples received in all
        self.kept_from = 0  # the sample index self.audio starts at
        self.item: str | None = None  # the open item, once speech started (or audio came, without VAD)
        self.previous: str | None = None
        self.told = ""  # the open item's text told as deltas
        self.told_words = 0
        self.last_words: list[str] | None = None
        self.partial_at = 0  # samples in the item at the last partial decode
        self.partial: Future | None = None
        self.early: tuple[int, Future] | None = None  # a final begun at a pause: (its audio's end, decode)
        self.finals: deque[_Final] = deque()  # committed, in order; the first may be decoding
        self.said: list[str] = []  # the final text of the session's items
        self.working = False
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
        """Stop; with `finish`, open speech is committed and every final told first. Waits for the thread."""
        self.commands.put(("finish" if finish else "stop", None))
        self.thread.join()

    @property
    def idle(self) -> bool:
        """Nothing to do and nothing being decoded."""
        return not self.working and self.commands.empty() and not self.finals

    # --- the session's thread ------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            self._serve()
        except Exception as exc:  # a bug: said once, as the session's last event, never a silent hang
            self._drop()
            self.emit(Failed(None, LiveSessionError(f"the live session stopped: internal error {type(exc).__name__}: {exc}")))
        finally:
            self.working = False

    def _serve(self) -> None:
        finishing = False
        while True:
            self.working = False
            batch = [self.commands.get()]
            self.working = True
            while True:  # everything that came meanwhile, so the session never falls behind
                try:
                    batch.append(self.commands.get_nowait())
                except queue.Empty:
                    break
            for command, value in batch:
                if command == "append" and not finishing:
                    self._append(value)
                elif command == "commit":
                    self._commit(manual=True)
                elif command == "clear":
                    self._reset()
                elif command == "partial":
                    self._partial_done(*value)
                elif command == "finish" and not finishing:
                    finishing = True
                    if self.item is not None:
                        self._commit(manual=False)
                elif command == "stop":
                    self._drop()
                    return
            self._finals()
            if finishing and not self.finals:
                self._drop()
                return
            if not finishing:
                self._maybe_partial()

    def _wake(self, kind: str, *value: object) -> Callable[[Future], None]:
        return lambda _: self.commands.put((kind, value))

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
            if turn.kind == "started":
                pad = int(self.options.turn_detection.prefix_padding_ms / 1000 * SAMPLE_RATE)
                self._keep_from(max(0, at - pad))
                self.item = _item_id()
                self.emit(SpeechStarted(self.item, _ms(self.kept_from)))
            elif self.item is None:
                continue
            elif turn.kind == "paused":
                self._begin_early(at)
            elif turn.kind == "resumed":
                self._drop_early()
            else:
                self.emit(SpeechStopped(self.item, _ms(at)))
                self._commit(manual=False, end=turn.cut * FRAME, resume_at=at)
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

    def _item_audio(self, end: int | None = None) -> np.ndarray:
        samples = np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)
        return samples if end is None else samples[: max(0, end - self.kept_from)]

    def _begin_early(self, end: int) -> None:
        """The speech paused: decode the item now, as it will be if the pause becomes the turn's end."""
        self._drop_early()
        if self.finals:  # an earlier final still decoding: this one needs its text as its prompt
            return
        future = self._decode(self._item_audio(end), beam=None)
        if future is not None:
            self.early = (end, future)
            future.add_done_callback(self._wake("decoded"))

    def _drop_early(self) -> None:
        if self.early is not None:
            self.early[1].cancel()
            self.early = None

    def _commit(self, manual: bool, end: int | None = None, resume_at: int | None = None) -> None:
        """Close the open item; its audio runs to `end` (all it has: None); audio from
        `resume_at` on (or from `end`) stays for what follows."""
        samples = self._item_audio(end)
        if len(samples) < _MIN_ITEM_S * SAMPLE_RATE and manual:
            self.emit(Failed(None, EmptyCommitError(
                f"buffer too small: a commit needs at least {_MIN_ITEM_S * 1000:.0f} ms of audio, "
                f"the buffer holds {_ms(len(samples))} ms"
            )))
            return
        item = self.item or _item_id()
        if self.turns is not None and end is None:
            # Committed mid-speech (by the caller, or at MAX_ITEM_S): speech that goes on opens a
            # new item. A turn's own end needs no reset, and one would undo a turn that started
            # later in the same chunk.
            self.turns.reset()
        self.emit(Committed(item, self.previous))
        self.previous = item
        final = _Final(item, samples, self.told)
        if self.early is not None and end is not None and self.early[0] == end:
            final.future = self.early[1]  # begun at the pause, on exactly this audio
            self.early = None
        self._drop_early()
        if self.partial is not None:
            self.partial.cancel()
        if len(samples):
            self.finals.append(final)
        keep = resume_at if resume_at is not None else (self.heard if end is None else end)
        self._reset(keep_from=keep)

    def _finals(self) -> None:
        """Tell the finished finals, in order, and start the next one's decode."""
        while self.finals:
            head = self.finals[0]
            if head.future is None:
                head.future = self._decode(head.samples, beam=None)
                if head.future is None:
                    self.finals.popleft()
                    continue
                head.future.add_done_callback(self._wake("decoded"))
            if not head.future.done():
                return
            self.finals.popleft()
            self._tell_final(head)

    def _tell_final(self, final: _Final) -> None:
        try:
            transcript = final.future.result()
        except HarkenError as exc:
            self.emit(Failed(final.item, exc))
            return
        except CancelledError:
            return
        self.said.append(transcript.text)
        words, told = transcript.text.split(), final.told.split()
        rest = words[_told_up_to(told, words):]
        if rest:  # the deltas then end as the final does
            self.emit(TextDelta(final.item, (" " if told else "") + " ".join(rest)))
        self.emit(Completed(final.item, transcript))

    def _decode(self, samples: np.ndarray, beam: int | None) -> Future | None:
        """Queue a decode of `samples` after the session's earlier text; None if it was refused
        (told as a Failed event when it is a final)."""
        options = {} if beam is None else {"beam_size": beam}
        try:
            return self.service.transcribe_later(
                Audio(samples, "live", SAMPLE_RATE, 1, "pcm"), model=self.entry.name, use_cache=False,
                language=self.options.language, initial_prompt=self._context(), **options,
            )
        except HarkenError as exc:
            if beam is None:
                self.emit(Failed(self.finals[0].item if self.finals else self.item, exc))
            return None

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
        self._drop_early()
        self.item, self.told, self.told_words, self.last_words, self.partial_at = None, "", 0, None, 0

    def _drop(self) -> None:
        """Stop: queued decodes are cancelled (one already running finishes unheard)."""
        for future in [f.future for f in self.finals] + [self.partial]:
            if future is not None:
                future.cancel()
        self._drop_early()
        self.finals.clear()

    def _maybe_partial(self) -> None:
        """Decode the open item again, when there is new audio and nothing more urgent to do."""
        if not self.options.partials or self.item is None or self.partial is not None:
            return
        if self.finals or self.early is not None or (self.turns is not None and self.turns.paused):
            return  # a final is decoding or about to: it goes first
        size = self._item_samples()
        if size - self.partial_at < PARTIAL_EVERY_S * SAMPLE_RATE:
            return
        if self.service.scheduler.queued().get(self.entry.name, 0) > 0:
            return  # other streams' work waits: finals before partials
        self.partial_at = size
        future = self._decode(np.concatenate(self.audio), beam=1)
        if future is not None:
            self.partial = future
            future.add_done_callback(self._wake("partial", self.item, future))

    def _partial_done(self, item: str, future: Future) -> None:
        """Tell the words on which this partial decode and the one before agree."""
        if future is self.partial:
            self.partial = None
        if item != self.item or future.cancelled() or future.exception() is not None:
            return  # the item was committed meanwhile, or the preview failed (the final will say)
        words = future.result().text.split()
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


def _told_up_to(told: list[str], final: list[str]) -> int:
    """Where, in the final's words, the words already told end: after the last final word that
    lines up with a told word (a partial may have misheard one), else after as many words."""
    if not told:
        return 0
    matcher = difflib.SequenceMatcher(None, [_plain(w) for w in told], [_plain(w) for w in final], autojunk=False)
    ends = [b + size for a, b, size in matcher.get_matching_blocks() if size]
    return max(ends) if ends else min(len(told), len(final))


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
