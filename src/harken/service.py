"""The Service: every task every front door offers, on one data path.

source -> load_audio -> cache lookup -> scheduler -> engine -> typed result with timings.

Each task has a blocking form (Python API, CLI) and an async form (the server) that share
`_begin` and `_finish`; only the wait in between differs. Cancelling the async form (a client
that hung up) cancels the queued engine work.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harken.audio import Audio, AudioSource, decode_audio, load_audio, read_audio
from harken.config import Settings
from harken.engines.base import Capability, EngineTranscript, TranscribeOptions
from harken.errors import CapabilityError
from harken.registry import LoadedModel, ModelEntry, Registry
from harken.results import LanguageGuess, Timings, Transcript
from harken.runtime.cache import ResultCache, cache_key
from harken.runtime.scheduler import BatchHook, Scheduler

__all__ = ["Service"]


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


class Service:
    def __init__(self, settings: Settings | None = None, *, on_batch: BatchHook | None = None) -> None:
        self.settings = settings or Settings.load()
        self.registry = Registry(self.settings)
        disk = self.settings.cache_dir / "results" if self.settings.result_cache.disk else None
        self.cache = ResultCache(self.settings.result_cache.memory_items, disk)
        sched = self.settings.scheduler
        self.scheduler = Scheduler(
            queue_size=sched.queue_size,
            max_batch=sched.max_batch,
            concurrency=sched.concurrency,
            batch_window_ms=sched.batch_window_ms,
            on_batch=on_batch,
        )

    def load_model(self, model: str | Path | None = None) -> LoadedModel:
        return self.registry.load(model)

    def unload_model(self, model: str | Path) -> bool:
        name = self.registry.resolve(model).name
        self.scheduler.forget(name)
        return self.registry.unload(name)

    def load_audio(self, source: AudioSource | Audio) -> Audio:
        if isinstance(source, Audio):
            return source
        return load_audio(source, max_duration=self.settings.max_audio_s)

    def transcribe(
        self, source: AudioSource | Audio, *, model: str | Path | None = None, use_cache: bool = True, **options: Any
    ) -> Transcript:
        """Speech to text in the spoken language. Options are those of TranscribeOptions."""
        return self._wait(self._begin(source, model, use_cache, TranscribeOptions.build(**options)))

    def translate(
        self, source: AudioSource | Audio, *, model: str | Path | None = None, use_cache: bool = True, **options: Any
    ) -> Transcript:
        """Speech in any language to English text."""
        return self._wait(self._begin(source, model, use_cache, TranscribeOptions.build(**{**options, "task": "translate"})))

    async def transcribe_async(
        self, source: AudioSource | Audio, *, model: str | Path | None = None, use_cache: bool = True, **options: Any
    ) -> Transcript:
        """`transcribe` for an event loop: decoding in a thread, the engine in its worker."""
        opts = TranscribeOptions.build(**options)
        return await self._wait_async(await asyncio.to_thread(self._begin, source, model, use_cache, opts))

    async def translate_async(
        self, source: AudioSource | Audio, *, model: str | Path | None = None, use_cache: bool = True, **options: Any
    ) -> Transcript:
        opts = TranscribeOptions.build(**{**options, "task": "translate"})
        return await self._wait_async(await asyncio.to_thread(self._begin, source, model, use_cache, opts))

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

    def close(self) -> None:
        """Finish queued work, then free every model."""
        self.scheduler.close(drain=True)
        for name in self.registry.loaded_names():
            self.registry.unload(name)

    def _begin(
        self, source: AudioSource | Audio, model: str | Path | None, use_cache: bool, options: TranscribeOptions
    ) -> Transcript | _Pending:
        """Decode, look in the cache, and queue the engine work: a cached Transcript or a _Pending."""
        start = time.perf_counter()
        entry = self.registry.resolve(model)  # before decoding: a bad name fails fast
        with self.scheduler.expecting(entry.name):
            # Hash first, decode only on a miss: a cache hit costs a read and a hash.
            raw = source if isinstance(source, Audio) else read_audio(source)
            key = cache_key(raw.sha256, entry.name, options.task, options.cache_key()) if use_cache else None
            if key is not None and (hit := self.cache.get(key)) is not None:
                done = time.perf_counter()
                cached = Transcript.from_dict(hit)
                return cached.with_timings(Timings(done - start, 0.0, done - start, cached.duration, cache_hit=True))
            audio = raw if isinstance(raw, Audio) else decode_audio(raw, max_duration=self.settings.max_audio_s)
            decoded = time.perf_counter()
            loaded = self.registry.load(entry.name)
            needed = Capability.TRANSLATE if options.task == "translate" else Capability.TRANSCRIBE
            if needed not in loaded.engine.capabilities:
                raise CapabilityError(
                    f"model {entry.name!r} cannot {options.task}; `harken models` lists the others", param="model"
                )
            future = self.scheduler.submit(entry.name, loaded.engine, audio.samples, options)
        return _Pending(entry, audio, options, key, start, decoded, future)

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
        )
        if pending.key is not None:
            self.cache.put(pending.key, transcript.to_dict())
        return transcript
