"""The Service: every task every front door offers, on one data path.

source -> load_audio -> cache lookup -> engine -> typed result with timings.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harken.audio import Audio, AudioSource, load_audio
from harken.config import Settings
from harken.engines.base import Capability, TranscribeOptions
from harken.errors import CapabilityError
from harken.registry import LoadedModel, ModelEntry, Registry
from harken.results import LanguageGuess, Timings, Transcript
from harken.runtime.cache import ResultCache, cache_key

__all__ = ["Service"]


class Service:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.load()
        self.registry = Registry(self.settings)
        disk = self.settings.cache_dir / "results" if self.settings.result_cache.disk else None
        self.cache = ResultCache(self.settings.result_cache.memory_items, disk)

    def load_model(self, model: str | Path | None = None) -> LoadedModel:
        return self.registry.load(model)

    def load_audio(self, source: AudioSource | Audio) -> Audio:
        if isinstance(source, Audio):
            return source
        return load_audio(source, max_duration=self.settings.max_audio_s)

    def transcribe(
        self, source: AudioSource | Audio, *, model: str | Path | None = None, use_cache: bool = True, **options: Any
    ) -> Transcript:
        """Speech to text in the spoken language. Options are those of TranscribeOptions."""
        return self._speech_to_text(source, model, use_cache, TranscribeOptions.build(**options))

    def translate(
        self, source: AudioSource | Audio, *, model: str | Path | None = None, use_cache: bool = True, **options: Any
    ) -> Transcript:
        """Speech in any language to English text."""
        return self._speech_to_text(source, model, use_cache, TranscribeOptions.build(**{**options, "task": "translate"}))

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
        for name in self.registry.loaded_names():
            self.registry.unload(name)

    def _speech_to_text(
        self, source: AudioSource | Audio, model: str | Path | None, use_cache: bool, options: TranscribeOptions
    ) -> Transcript:
        start = time.perf_counter()
        entry = self.registry.resolve(model)  # before decoding: a bad name fails fast
        audio = self.load_audio(source)
        decoded = time.perf_counter()
        key = _key(audio, entry, options)
        if use_cache and (hit := self.cache.get(key)) is not None:
            done = time.perf_counter()
            return Transcript.from_dict(hit).with_timings(
                Timings(decoded - start, 0.0, done - start, audio.duration, cache_hit=True)
            )
        loaded = self.registry.load(entry.name)
        needed = Capability.TRANSLATE if options.task == "translate" else Capability.TRANSCRIBE
        if needed not in loaded.engine.capabilities:
            raise CapabilityError(f"model {entry.name!r} cannot {options.task}; `harken models` lists the others", param="model")
        result = loaded.engine.transcribe(audio.samples, options)
        done = time.perf_counter()
        transcript = Transcript(
            text=" ".join(s.text for s in result.segments if s.text),
            language=result.language,
            language_probability=round(result.language_probability, 4),
            duration=round(audio.duration, 3),
            segments=result.segments,
            model=entry.name,
            task=options.task,
            timings=Timings(decoded - start, done - decoded, done - start, audio.duration),
        )
        if use_cache:
            self.cache.put(key, transcript.to_dict())
        return transcript


def _key(audio: Audio, entry: ModelEntry, options: TranscribeOptions) -> str:
    return cache_key(audio.sha256, entry.name, options.task, options.cache_key())
