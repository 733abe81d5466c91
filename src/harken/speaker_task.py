"""The diarize task behind Service.diarize: resolve the diarizer, look in the cache, find the
speech, run the engine, and say what the user should know."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harken.audio import Audio, AudioSource, RawAudio, read_audio
from harken.diarization import MAX_REFERENCES, DiarizeOptions, SpeakerReference, check_reference, finish, speech_regions
from harken.engines.base import Capability
from harken.errors import CapabilityError, InvalidOptionError
from harken.registry import Registry
from harken.results import Diarization, Timings
from harken.runtime.cache import ResultCache, cache_key

__all__ = ["SpeakerTask", "KnownSpeakers"]

# Name -> a clip of that speaker (2-10 s): a source, decoded Audio, or 16 kHz mono samples.
KnownSpeakers = Mapping[str, "AudioSource | Audio | np.ndarray"]


class SpeakerTask:
    def __init__(
        self, registry: Registry, cache: ResultCache, default_model: str,
        decode: Callable[[RawAudio], Audio], load_audio: Callable[[Any], Audio],
    ) -> None:
        self.registry, self.cache, self.default_model = registry, cache, default_model
        self._decode, self._load_audio = decode, load_audio

    def references(self, known: KnownSpeakers | None) -> tuple[SpeakerReference, ...]:
        if not known:
            return ()
        if len(known) > MAX_REFERENCES:
            raise InvalidOptionError(
                f"at most {MAX_REFERENCES} known speakers can be named, not {len(known)}", param="known_speaker_names"
            )
        out = []
        for name, source in known.items():
            if isinstance(source, np.ndarray):  # samples already: float32 mono 16 kHz
                samples = np.asarray(source, dtype=np.float32).reshape(-1)
                sha = hashlib.sha256(samples.tobytes()).hexdigest()
            else:
                audio = self._load_audio(source)
                samples, sha = audio.samples, audio.sha256
            check_reference(name, samples)
            out.append(SpeakerReference(name.strip(), samples, sha))
        if len({r.name for r in out}) < len(out):
            raise InvalidOptionError("known speaker names must differ", param="known_speaker_names")
        return tuple(out)

    def diarize(
        self, source: AudioSource | Audio | RawAudio, *, model: str | Path | None = None, use_cache: bool = True,
        references: tuple[SpeakerReference, ...] = (), options: DiarizeOptions | None = None,
    ) -> Diarization:
        """`references` from `references()`, checked before any other work."""
        start = time.perf_counter()
        entry = self.registry.resolve(model if model is not None else self.default_model, task="diarize")
        options = options or DiarizeOptions()
        raw = source if isinstance(source, (Audio, RawAudio)) else read_audio(source)
        extra = "|".join(f"{r.name}={r.sha256}" for r in references)
        key = cache_key(raw.sha256, entry.name, "diarize", options.cache_key() + extra) if use_cache else None
        if key is not None and (hit := self.cache.get(key)) is not None:
            cached = Diarization.from_dict(hit)
            done = time.perf_counter()
            return cached.with_timings(Timings(done - start, 0.0, done - start, cached.duration, cache_hit=True))
        audio = raw if isinstance(raw, Audio) else self._decode(raw)
        decoded = time.perf_counter()
        engine = self.registry.load(entry.name).engine
        if Capability.DIARIZE not in engine.capabilities:
            raise CapabilityError(
                f"model {entry.name!r} cannot tell speakers apart; `harken models` lists the diarizers", param="model"
            )
        result = engine.diarize(audio.samples, speech_regions(audio.samples), options, references)
        done = time.perf_counter()
        diarization = finish(
            result.turns, result.warnings, duration=round(audio.duration, 3), model=entry.name,
            timings=Timings(decoded - start, done - decoded, done - start, audio.duration), audio_sha256=audio.sha256,
        )
        if key is not None:
            self.cache.put(key, diarization.to_dict())
        return diarization
