"""The Service: every task every front door offers, on one data path.

source -> load_audio -> cache lookup -> scheduler -> engine -> typed result with timings.

Each task has a blocking form (Python API, CLI) and an async form (the server) that share
`_begin` and `_finish`; only the wait in between differs. Cancelling the async form (a client
that hung up) cancels the queued engine work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


from harken.audio import Audio, AudioSource, RawAudio, read_audio
from harken.audio.isolation import make_decoder
from harken.checks import installed_model, language_mismatch
from harken.config import Settings
from harken.engines.base import Capability, EngineTranscript, OnProgress, TranscribeOptions, Watch
from harken.engines.chat import AudioPart, ChatMessage, ChatOptions, EngineReply, OnText, TextPart
from harken.diarization import DiarizeOptions, assign_speakers
from harken.errors import (
    AudioTooLongError, CapabilityError, InvalidOptionError, install_command,
)
from harken.tasks import CAPTION_PROMPT, analyze_prompt, load_schema, parse_analysis
from harken.windows import map_reduce, window_of
from harken.registry import LoadedModel, ModelEntry, Registry
from harken.results import ChatResult, Diarization, LanguageGuess, SpeechAudio, Timings, Transcript, TranscriptWarning
from harken.runtime.cache import ResultCache, cache_key
from harken.runtime.scheduler import BatchHook, Scheduler
from harken.speaker_task import KnownSpeakers, SpeakerTask
from harken.speech_task import SpeakAnswer, SpeechTask, Spoken, VoiceChoice, speak_answer, speech_format

__all__ = ["Service", "ChatTurn", "SpeakAnswer", "VoiceChoice"]

# What a caller names when it means "whatever the default model is" (OpenAI clients send whisper-1).
DEFAULT_NAMES = ("whisper-1", "default")


class ChatTurn:
    """A queued (or cached) chat answer, awaited by the server."""

    def __init__(self, service: Service, begun: ChatResult | _PendingChat) -> None:
        self._service, self._begun = service, begun

    @property
    def model(self) -> str:
        return self._begun.model if isinstance(self._begun, ChatResult) else self._begun.entry.name

    async def result(self) -> ChatResult:
        begun = self._begun
        if isinstance(begun, ChatResult):
            return begun
        if isinstance(begun, _LongChat):
            try:
                return await asyncio.wrap_future(begun.future)
            except asyncio.CancelledError:
                begun.cancelled.set()  # stops before the next window
                raise
        reply = await asyncio.wrap_future(begun.future)
        if begun.speak is None:
            return self._service._chat_finish(begun, reply)
        return await asyncio.to_thread(self._service._chat_finish, begun, reply)  # synthesis and encoding


@dataclass
class _LongChat:
    """A conversation whose audio is longer than the model's window, answered window by window."""

    entry: ModelEntry
    future: Future  # of the merged ChatResult
    cancelled: threading.Event


@dataclass
class _PendingChat:
    entry: ModelEntry
    task: str
    options: ChatOptions
    key: str | None
    start: float
    decoded: float
    audio_s: float
    audio_sha256: tuple[str, ...]
    future: Future
    speak: Spoken | None = None


@dataclass
class _Pending:
    """A request handed to the scheduler, waiting for its engine result."""

    entry: ModelEntry
    audio: Audio
    options: TranscribeOptions
    key: str | None  # None: not cached
    start: float
    decoded: float
    future: Future
    notes: tuple[TranscriptWarning, ...] = ()  # said on the transcript before the engine's warnings


class Service:
    """`model_roots`: where model directories may be named from (None: anywhere; the server
    passes its operator's list, usually empty: catalogue names only)."""

    def __init__(
        self, settings: Settings | None = None, *, on_batch: BatchHook | None = None,
        model_roots: list[Path] | None = None,
    ) -> None:
        self.settings = settings or Settings.load()
        self.registry = Registry(self.settings, model_roots=model_roots)
        self.decoder = make_decoder(self.settings.decode)
        self.decoder.start()  # the decoder's host process boots while models load
        disk = self.settings.cache_dir / "results" if self.settings.result_cache.disk else None
        cached = self.settings.result_cache
        self.cache = ResultCache(cached.memory_items, disk, memory_bytes=int(cached.memory_mb * 1024 * 1024))
        # Long conversations walk their windows here; each window still queues on the scheduler.
        self._windows = ThreadPoolExecutor(4, thread_name_prefix="harken-windows")
        self.speakers = SpeakerTask(self.registry, self.cache, self.settings.default_diarizer, self.decode, self.load_audio)
        sched = self.settings.scheduler
        self.scheduler = Scheduler(
            queue_size=sched.queue_size,
            max_batch=sched.max_batch,
            concurrency=sched.concurrency,
            batch_window_ms=sched.batch_window_ms,
            on_batch=on_batch,
        )
        self.speech = SpeechTask(self.registry, self.scheduler)

    def load_model(self, model: str | Path | None = None) -> LoadedModel:
        return self.registry.load(model)

    def unload_model(self, model: str | Path) -> bool:
        name = self.registry.resolve(model).name
        self.scheduler.forget(name)
        return self.registry.unload(name)

    def load_audio(self, source: AudioSource | Audio | RawAudio) -> Audio:
        if isinstance(source, Audio):
            return source
        return self.decode(source if isinstance(source, RawAudio) else read_audio(source))

    def decode(self, raw: RawAudio) -> Audio:
        """Decode read audio under the duration limit (in a child process unless configured inline)."""
        return self.decoder.decode(raw, max_duration=self.settings.max_audio_s)

    def transcribe(
        self, source: AudioSource | Audio, *, model: str | Path | None = None, use_cache: bool = True,
        on_progress: OnProgress | None = None, on_text: OnText | None = None,
        diarize: bool | DiarizeOptions = False, known_speakers: KnownSpeakers | None = None, **options: Any,
    ) -> Transcript:
        """Speech to text in the spoken language. Options are those of TranscribeOptions.

        Called from a worker as decoding goes on: `on_progress(seconds_done, seconds_in_all)`, and
        `on_text(delta)` with text no later step will change; the deltas join to the result's text.
        `diarize` (True, or DiarizeOptions) or `known_speakers` ({name: 2-10 s clip}): each segment
        gets its `speaker`, and segments are split where the speaker changes.
        """
        watch = Watch(on_progress, on_text)
        if not (diarize or known_speakers):
            return self._wait(self._begin(source, model, use_cache, TranscribeOptions.build(**options), watch))
        opts = TranscribeOptions.build(**{**options, "word_timestamps": True})
        speaking = _speaker_options(diarize)
        references = self.speakers.references(known_speakers)
        audio = self.load_audio(source)
        transcript = self._wait(self._begin(audio, model, use_cache, opts, watch))
        return _with_speakers(transcript, self.speakers.diarize(audio, use_cache=use_cache, references=references, options=speaking))

    def diarize(
        self, source: AudioSource | Audio, *, model: str | Path | None = None, use_cache: bool = True,
        known_speakers: KnownSpeakers | None = None, **options: Any,
    ) -> Diarization:
        """Who spoke when. Options: `num_speakers`, or `min_speakers`/`max_speakers`;
        `known_speakers` names voices by a 2-10 s clip of each (at most 4)."""
        opts = DiarizeOptions.build(**options)
        references = self.speakers.references(known_speakers)
        return self.speakers.diarize(source, model=model, use_cache=use_cache, references=references, options=opts)

    async def diarize_async(self, source: AudioSource | Audio, **kwargs: Any) -> Diarization:
        return await asyncio.to_thread(self.diarize, source, **kwargs)

    def translate(
        self, source: AudioSource | Audio, *, model: str | Path | None = None, use_cache: bool = True,
        on_progress: OnProgress | None = None, on_text: OnText | None = None, **options: Any,
    ) -> Transcript:
        """Speech in any language to English text."""
        opts = TranscribeOptions.build(**{**options, "task": "translate"})
        return self._wait(self._begin(source, model, use_cache, opts, Watch(on_progress, on_text)))

    async def transcribe_async(
        self, source: AudioSource | Audio, *, model: str | Path | None = None, use_cache: bool = True,
        on_text: OnText | None = None, diarize: bool | DiarizeOptions = False,
        known_speakers: KnownSpeakers | None = None, **options: Any,
    ) -> Transcript:
        """`transcribe` for an event loop: decoding in a thread, the engine in its worker; with
        `diarize`, the speakers are found in a thread while the words are decoded."""
        if not (diarize or known_speakers):
            opts = TranscribeOptions.build(**options)
            return await self._wait_async(await self._begin_async(source, model, use_cache, opts, Watch(text=on_text)))
        opts = TranscribeOptions.build(**{**options, "word_timestamps": True})
        speaking = _speaker_options(diarize)
        references = await asyncio.to_thread(self.speakers.references, known_speakers)
        audio = await asyncio.to_thread(self.load_audio, source)
        begun = await self._begin_async(audio, model, use_cache, opts, Watch(text=on_text))
        transcript, diarization = await asyncio.gather(
            self._wait_async(begun),
            asyncio.to_thread(self.speakers.diarize, audio, use_cache=use_cache, references=references, options=speaking),
        )
        return _with_speakers(transcript, diarization)

    async def translate_async(
        self, source: AudioSource | Audio, *, model: str | Path | None = None, use_cache: bool = True,
        on_text: OnText | None = None, **options: Any,
    ) -> Transcript:
        opts = TranscribeOptions.build(**{**options, "task": "translate"})
        return await self._wait_async(await self._begin_async(source, model, use_cache, opts, Watch(text=on_text)))

    def transcribe_later(
        self, source: AudioSource | Audio, *, model: str | Path | None = None, use_cache: bool = True,
        on_text: OnText | None = None, **options: Any,
    ) -> Future[Transcript]:
        """`transcribe` without the wait: request errors are raised here, the Future yields the
        Transcript (or the engine's error). Cancelling the Future cancels queued work."""
        begun = self._begin(source, model, use_cache, TranscribeOptions.build(**options), Watch(text=on_text))
        out: Future[Transcript] = Future()
        if isinstance(begun, Transcript):
            out.set_result(begun)
            return out

        def done(engine: Future) -> None:
            if engine.cancelled():
                out.cancel()
                return
            transcript, error = None, None
            try:
                transcript = self._finish(begun, engine.result())  # result() raises the engine's error
            except BaseException as exc:
                error = exc
            with contextlib.suppress(InvalidStateError):  # the waiter cancelled meanwhile
                if error is None:
                    out.set_result(transcript)
                else:
                    out.set_exception(error)

        out.add_done_callback(lambda f: f.cancelled() and begun.future.cancel())
        begun.future.add_done_callback(done)
        return out

    async def begin_transcript_async(
        self, source: AudioSource | Audio, *, task: str = "transcribe", model: str | Path | None = None,
        use_cache: bool = True, on_text: OnText | None = None, **options: Any,
    ) -> asyncio.Future[Transcript]:
        """Check, decode and queue a transcription (or translation) for a stream: every request
        error is raised here, before any text. The returned future yields the Transcript;
        cancelling it cancels the queued work."""
        opts = TranscribeOptions.build(**{**options, "task": task})
        begun = await self._begin_async(source, model, use_cache, opts, Watch(text=on_text))
        return asyncio.ensure_future(self._wait_async(begun))

    def detect_language(self, source: AudioSource | Audio, *, model: str | Path | None = None) -> LanguageGuess:
        start = time.perf_counter()
        entry = self.registry.resolve(model)
        audio = self.load_audio(source)
        decoded = time.perf_counter()
        loaded = self.registry.load(entry.name)
        language, probability, all_probs = loaded.engine.detect_language(audio.samples)
        done = time.perf_counter()
        timings = Timings(decoded - start, done - decoded, done - start, audio.duration)
        return LanguageGuess(language, probability, tuple(all_probs), entry.name, timings)

    # --- audio-language tasks -------------------------------------------------------------------

    def audio_part(self, source: AudioSource | Audio) -> AudioPart:
        audio = self.load_audio(source)
        return AudioPart(audio.samples, audio.sha256)

    def chat(
        self, messages: list[ChatMessage], *, model: str | Path | None = None, use_cache: bool = True,
        on_text: OnText | None = None, speak: SpeakAnswer | bool = False, **options: Any,
    ) -> ChatResult:
        """One assistant turn for a conversation whose messages may hold audio parts. With `speak`
        (True, or a SpeakAnswer naming voice and format) the answer is also spoken, in
        `result.speech`: by the model's own talker where it has one, else by a Piper voice."""
        opts = _chat_options(options)
        return self._chat_wait(self._chat_begin(messages, model, use_cache, on_text, opts, "chat", speak=speak_answer(speak)))

    async def chat_async(
        self, messages: list[ChatMessage], *, model: str | Path | None = None, use_cache: bool = True,
        on_text: OnText | None = None, speak: SpeakAnswer | bool = False, **options: Any,
    ) -> ChatResult:
        turn = await self.begin_chat_async(messages, model=model, use_cache=use_cache, on_text=on_text, speak=speak, **options)
        return await turn.result()

    async def begin_chat_async(
        self, messages: list[ChatMessage], *, model: str | Path | None = None, use_cache: bool = True,
        on_text: OnText | None = None, speak: SpeakAnswer | bool = False, **options: Any,
    ) -> ChatTurn:
        """Check and queue a chat turn; every request error (a bad voice too) is raised here, before
        any answer streams. Await `turn.result()` for the answer; cancelling that await cancels queued work."""
        opts = _chat_options(options)
        begun = await asyncio.to_thread(self._chat_begin, messages, model, use_cache, on_text, opts, "chat",
                                        speak=speak_answer(speak))
        return ChatTurn(self, begun)

    def ask(self, source: AudioSource | Audio, question: str, *, model: str | Path | None = None, **options: Any) -> ChatResult:
        """Answer a question about a clip (windows of a long clip answered, then merged)."""
        if not question or not question.strip():
            raise InvalidOptionError("the question is empty", param="question")
        return self._audio_task("ask", source, model, options, question)

    def caption(self, source: AudioSource | Audio, *, model: str | Path | None = None, **options: Any) -> ChatResult:
        """Describe a clip. A Captioner model gets the audio alone; others a captioning prompt."""
        return self._audio_task("caption", source, model, options, None)

    def analyze(
        self, source: AudioSource | Audio, schema: str | Path | dict[str, Any] = "tone", *,
        model: str | Path | None = None, **options: Any,
    ) -> ChatResult:
        """A JSON object about the clip that validates against `schema` (built-in name, file or dict);
        a long clip is analysed per window and the answers aggregated."""
        schema_dict = load_schema(schema)
        return self._audio_task("analyze", source, model, options, analyze_prompt(schema_dict), schema_dict)

    def _audio_task(
        self, task: str, source: AudioSource | Audio, model: str | Path | None, options: dict[str, Any],
        prompt: str | None, schema: dict[str, Any] | None = None,
    ) -> ChatResult:
        start = time.perf_counter()
        options = dict(options)
        use_cache = options.pop("use_cache", True)
        opts = _chat_options({**options, "json_schema": schema} if schema is not None else options)
        audio = self.load_audio(source)
        engine = self.registry.load(model).engine
        if task == "caption" and not getattr(engine, "prompt_free_caption", False):
            prompt = CAPTION_PROMPT

        def turn(parts: tuple[AudioPart | TextPart, ...], turn_options: ChatOptions = opts) -> ChatResult:
            begun = self._chat_begin([ChatMessage("user", parts)], model, use_cache, None, turn_options, task, start)
            return self._chat_wait(begun)

        def answer(part: AudioPart, note: str) -> ChatResult:
            return turn((part,) if prompt is None else (part, TextPart(f"{prompt}\n{note}" if schema is None else prompt)))

        window = window_of(engine, opts)
        if audio.duration <= window:
            parts = (AudioPart(audio.samples, audio.sha256),) + (() if prompt is None else (TextPart(prompt),))
            return turn(parts)
        merge = lambda text: turn((TextPart(text),), replace(opts, json_schema=None))  # noqa: E731
        return map_reduce(audio, window, task, prompt, schema, answer, merge, start)

    def _chat_begin(
        self, messages: list[ChatMessage], model: str | Path | None, use_cache: bool, on_text: OnText | None,
        options: ChatOptions, task: str, start: float | None = None, *, speak: SpeakAnswer | None = None,
    ) -> ChatResult | _PendingChat | _LongChat:
        start = start if start is not None else time.perf_counter()
        decoded = time.perf_counter()
        entry = self.registry.resolve(model)
        loaded = self.registry.load(entry.name)
        engine = loaded.engine
        if Capability.CHAT not in engine.capabilities:
            raise CapabilityError(
                f"model {entry.name!r} cannot chat about audio; it serves /v1/audio/transcriptions and `harken transcribe`",
                param="model",
            )
        spoken = None
        if speak is not None:  # who speaks is settled (and a bad voice or format refused) before any work
            speech_format(speak.format)
            spoken = Spoken(speak, self.speech.choose_voice(speak.voice, entry.name))
        # The model's own voice, made with the answer in one generation (another talker model named
        # as the voice reads this model's answer afterwards).
        own = spoken is not None and spoken.choice.own and spoken.choice.entry.name == entry.name
        if own:
            engine.check_speech(spoken.choice.speaker, options)
        parts = [p for m in messages for p in m.audio]
        window = window_of(engine, options)
        if any(len(p.samples) / 16_000 > window for p in parts):
            if task != "chat":  # the audio tasks cut their clip into windows themselves
                raise AudioTooLongError(f"audio longer than {entry.name}'s {window:.0f} s window")
            return self._long_chat(messages, entry, use_cache, on_text, options, window, start, spoken)
        audio_s = sum(len(p.samples) for p in parts) / 16_000
        # Only a deterministic answer is worth caching: greedy decoding, or a fixed seed. An answer
        # in the model's own voice is not: its text and its speech come from one generation.
        key = None
        if use_cache and not own and (options.temperature == 0 or options.seed is not None):
            key = cache_key(entry.name, task, options.cache_key(), _conversation_key(messages))
            if (hit := self.cache.get(key)) is not None:
                cached = ChatResult.from_dict(hit)
                if on_text is not None:
                    on_text(cached.text)
                done = time.perf_counter()
                cached = cached.with_timings(Timings(decoded - start, 0.0, done - start, audio_s, cache_hit=True))
                return cached if spoken is None else self.speech.spoken(cached, spoken)
        if own:
            speaker = spoken.choice.speaker
            call = lambda: engine.chat(messages, options, on_text, voice=speaker)  # noqa: E731
        else:
            call = lambda: engine.chat(messages, options, on_text)  # noqa: E731
        future = self.scheduler.submit_call(entry.name, engine, call)
        return _PendingChat(entry, task, options, key, start, decoded, audio_s, tuple(p.sha256 for p in parts), future,
                            spoken)

    def _long_chat(
        self, messages: list[ChatMessage], entry: ModelEntry, use_cache: bool, on_text: OnText | None,
        options: ChatOptions, window: float, start: float, spoken: Spoken | None = None,
    ) -> _LongChat:
        """The conversation once per window of its long audio part, then merged (or aggregated
        under a schema); only the merged answer streams, and only it is spoken."""
        where = [(i, j) for i, m in enumerate(messages) for j, p in enumerate(m.parts)
                 if isinstance(p, AudioPart) and len(p.samples) / 16_000 > window]
        if len(where) > 1:
            raise AudioTooLongError(
                f"{len(where)} audio parts are longer than {entry.name}'s {window:.0f} s window; one long part per "
                "conversation is answered window by window, so send the others shorter or in separate requests",
                param="messages",
            )
        (i, j), = where
        long_part = messages[i].parts[j]
        audio = Audio(long_part.samples, long_part.sha256, 16_000, 1, "pcm")
        users = [m for m in messages if m.role == "user"]
        question = " ".join(p.text for p in users[-1].parts if isinstance(p, TextPart)).strip() if users else ""
        schema = json.loads(options.json_schema) if options.json_schema is not None else None

        def answer(part: AudioPart, note: str) -> ChatResult:
            parts = list(messages[i].parts)
            parts[j] = part
            if schema is None:  # under a schema the prompt stays the client's own
                parts.append(TextPart(note))
            asked = messages[:i] + [ChatMessage(messages[i].role, tuple(parts))] + messages[i + 1:]
            return self._chat_wait(self._chat_begin(asked, entry.name, use_cache, None, options, "chat", start))

        merged_speech: list[SpeechAudio] = []

        def merge(prompt: str) -> ChatResult:
            asked = [m for m in messages if m.role == "system"] + [ChatMessage("user", (TextPart(prompt),))]
            merge_options = replace(options, json_schema=None)
            merged = self._chat_wait(self._chat_begin(asked, entry.name, use_cache, on_text, merge_options, "chat", start,
                                                      speak=spoken.request if spoken is not None else None))
            if merged.speech is not None:
                merged_speech.append(merged.speech)
            return merged

        cancelled = threading.Event()

        def run() -> ChatResult:
            result = map_reduce(audio, window, "chat", question or None, schema, answer, merge, start, cancelled)
            if schema is not None and on_text is not None:
                on_text(result.text)  # the aggregate exists only once every window is in
            if spoken is not None:  # the merge turn spoke its answer; an aggregate is read out now
                result = replace(result, speech=merged_speech[-1]) if merged_speech else self.speech.spoken(result, spoken)
            return result

        return _LongChat(entry, self._windows.submit(run), cancelled)

    def _chat_wait(self, begun: ChatResult | _PendingChat | _LongChat) -> ChatResult:
        if isinstance(begun, ChatResult):
            return begun
        if isinstance(begun, _LongChat):
            return begun.future.result()
        return self._chat_finish(begun, begun.future.result())

    def _chat_finish(self, pending: _PendingChat, reply: EngineReply) -> ChatResult:
        done = time.perf_counter()
        result = None
        if pending.task == "analyze" and pending.options.json_schema is not None:
            result = parse_analysis(reply.text, json.loads(pending.options.json_schema), reply.finish_reason,
                                    pending.options.max_new_tokens)
        answer = ChatResult(
            text=reply.text,
            model=pending.entry.name,
            task=pending.task,
            finish_reason=reply.finish_reason,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            timings=Timings(pending.decoded - pending.start, done - pending.decoded, done - pending.start, pending.audio_s),
            result=result,
            audio_sha256=pending.audio_sha256,
        )
        if pending.key is not None:
            self.cache.put(pending.key, answer.to_dict())
        return answer if pending.speak is None else self.speech.spoken(answer, pending.speak, reply.speech)

    # --- speech out (speech_task.SpeechTask) ---------------------------------------------------

    def choose_voice(self, voice: str | Path | None = None, model: str | Path | None = None) -> VoiceChoice:
        """Who speaks: a model's own talker or a Piper voice (see SpeechTask.choose_voice)."""
        return self.speech.choose_voice(voice, model)

    def speak(
        self, text: str, *, voice: str | Path | None = None, speed: float = 1.0, format: str = "wav",
        model: str | Path | None = None,
    ) -> SpeechAudio:
        """Text to encoded speech: with a Piper voice (the embedded one by default), or, when
        `model` (or `voice`) names a model with a talker, in that model's own voice."""
        return self.speech.speak(text, voice=voice, speed=speed, format=format, model=model)

    def speak_stream(
        self, text: str, *, voice: str | Path | None = None, speed: float = 1.0, format: str = "wav",
        model: str | Path | None = None,
    ) -> Iterator[bytes]:
        """Encoded speech sentence by sentence; every request error is raised before the first byte."""
        return self.speech.speak_stream(text, voice=voice, speed=speed, format=format, model=model)

    def close(self) -> None:
        """Finish queued work, then free every model."""
        self._windows.shutdown(wait=True)
        self.scheduler.close(drain=True)
        for name in self.registry.loaded_names():
            self.registry.unload(name)

    def _begin(
        self, source: AudioSource | Audio, model: str | Path | None, use_cache: bool, options: TranscribeOptions,
        watch: Watch | None = None,
    ) -> Transcript | _Pending:
        """Decode, look in the cache, and queue the engine work: a cached Transcript or a _Pending."""
        start = time.perf_counter()
        entry = self.registry.resolve(model)  # before decoding: a bad name fails fast
        notes: tuple[TranscriptWarning, ...] = ()
        if options.task == "translate":  # the one task a default (English-only) Whisper lacks
            entry, notes = self._translator(entry, model)
        with self.scheduler.expecting(entry.name):
            # Hash first, decode only on a miss: a cache hit costs a read and a hash.
            raw = source if isinstance(source, (Audio, RawAudio)) else read_audio(source)
            key = cache_key(raw.sha256, entry.name, options.task, options.cache_key()) if use_cache else None
            if key is not None and (hit := self.cache.get(key)) is not None:
                done = time.perf_counter()
                cached = Transcript.from_dict(hit)
                cached = replace(cached, warnings=notes + cached.warnings)
                if watch is not None and watch.text is not None and cached.text:
                    watch.text(cached.text)
                return cached.with_timings(Timings(done - start, 0.0, done - start, cached.duration, cache_hit=True))
            audio = raw if isinstance(raw, Audio) else self.decode(raw)
            decoded = time.perf_counter()
            loaded = self.registry.load(entry.name)
            needed = Capability.TRANSLATE if options.task == "translate" else Capability.TRANSCRIBE
            if needed not in loaded.engine.capabilities:
                raise CapabilityError(
                    f"model {entry.name!r} cannot {options.task}; `harken models` lists the others", param="model"
                )
            future = self.scheduler.submit(entry.name, loaded.engine, audio.samples, options, watch)
        return _Pending(entry, audio, options, key, start, decoded, future, notes)

    def _translator(self, entry: ModelEntry, asked: str | Path | None) -> tuple[ModelEntry, tuple[TranscriptWarning, ...]]:
        """The model that translates: `entry`, or, when the caller asked only for the default
        (no model, `whisper-1`, `default`) and it cannot, an installed one that can, said in a note."""
        if Capability.TRANSLATE in self.registry.load(entry.name).engine.capabilities:
            return entry, ()
        if asked is None or str(asked) in DEFAULT_NAMES:
            found = installed_model(self.registry, Capability.TRANSLATE, entry.name)
            if found is not None:
                note = TranscriptWarning(
                    "model_substituted", f"{entry.name} cannot translate; {found[0]} translated instead"
                )
                return self.registry.resolve(found[0]), (note,)
            raise CapabilityError(
                f"model {entry.name!r} cannot translate and no installed model can: install a multilingual "
                f"Whisper ({install_command('multilingual')}) and use model whisper-base",
                param="model",
            )
        raise CapabilityError(
            f"model {entry.name!r} cannot translate (it is English-only); use a multilingual Whisper such as "
            "whisper-base (`harken models` lists what is installed)",
            param="model",
        )

    async def _begin_async(self, *args: Any) -> Transcript | _Pending:
        """`_begin` in a thread. Cancelled meanwhile (a client gone while its upload decodes), the
        thread still runs to the end and queues the work: that work is cancelled as it is queued."""
        begun = asyncio.ensure_future(asyncio.to_thread(self._begin, *args))
        try:
            return await asyncio.shield(begun)
        except asyncio.CancelledError:
            begun.add_done_callback(_cancel_queued)
            raise

    def _wait(self, begun: Transcript | _Pending) -> Transcript:
        if isinstance(begun, Transcript):
            return begun
        return self._finish(begun, begun.future.result())

    async def _wait_async(self, begun: Transcript | _Pending) -> Transcript:
        if isinstance(begun, Transcript):
            return begun
        # Cancelling this await (a client gone) cancels the queued job too.
        return self._finish(begun, await asyncio.wrap_future(begun.future))

    def _finish(self, pending: _Pending, result: EngineTranscript) -> Transcript:
        done = time.perf_counter()
        audio, options = pending.audio, pending.options
        transcript = Transcript(
            text=" ".join(s.text for s in result.segments if s.text),
            language=result.language,
            language_probability=round(result.language_probability, 4),
            duration=round(audio.duration, 3),
            segments=result.segments,
            model=pending.entry.name,
            task=options.task,
            timings=Timings(pending.decoded - pending.start, done - pending.decoded, done - pending.start, audio.duration),
            audio_sha256=audio.sha256,
            warnings=result.warnings,
        )
        if mismatch := language_mismatch(self.registry, pending.entry, audio.samples, result):
            transcript = replace(transcript, warnings=(mismatch, *transcript.warnings))
        if pending.key is not None:
            self.cache.put(pending.key, transcript.to_dict())
        # Notes say how this request was served (which model stood in), not what the audio holds:
        # they are not cached with it, since the same result may be asked for directly.
        return replace(transcript, warnings=pending.notes + transcript.warnings)


def _cancel_queued(begun: asyncio.Future) -> None:
    if not begun.cancelled() and begun.exception() is None and isinstance(begun.result(), _Pending):
        begun.result().future.cancel()


def _speaker_options(diarize: bool | DiarizeOptions) -> DiarizeOptions:
    return diarize if isinstance(diarize, DiarizeOptions) else DiarizeOptions()


def _with_speakers(transcript: Transcript, diarization: Diarization) -> Transcript:
    """The transcript with its speakers; its timings count the diarizer's time too."""
    t, d = transcript.timings, diarization.timings
    timings = replace(t, inference_s=t.inference_s + d.inference_s, total_s=t.total_s + d.inference_s,
                      cache_hit=t.cache_hit and d.cache_hit)
    return assign_speakers(transcript, diarization).with_timings(timings)


def _chat_options(options: dict[str, Any]) -> ChatOptions:
    """ChatOptions from loose keywords; `max_tokens` (the OpenAI name) means max_new_tokens."""
    options = dict(options)
    if "max_tokens" in options:
        options["max_new_tokens"] = options.pop("max_tokens")
    schema = options.pop("json_schema", None)
    known = {"max_new_tokens", "temperature", "top_p", "top_k", "seed"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidOptionError(f"unknown option {unknown[0]!r}", param=unknown[0])
    text = schema if isinstance(schema, str) or schema is None else ChatOptions.schema_text(schema)
    return ChatOptions(json_schema=text, **{k: v for k, v in options.items() if v is not None})


def _conversation_key(messages: list[ChatMessage]) -> str:
    return json.dumps(
        [[m.role, [p.sha256 if isinstance(p, AudioPart) else p.text for p in m.parts]] for m in messages]
    )
