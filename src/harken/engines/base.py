"""The Engine protocol, capability flags and the options a transcription takes."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from enum import Flag, auto
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from harken.errors import InvalidOptionError
from harken.results import Segment, TranscriptWarning

__all__ = [
    "Capability", "Engine", "SpeechEngine", "TranscribeOptions", "EngineTranscript", "check_range",
    "OnProgress", "OnText", "Watch",
]


class Capability(Flag):
    TRANSCRIBE = auto()
    TRANSLATE = auto()
    DETECT_LANGUAGE = auto()
    CHAT = auto()
    SPEAK = auto()
    DIARIZE = auto()


LongForm = Literal["auto", "segmented", "sequential"]


@dataclass(frozen=True)
class TranscribeOptions:
    """Options for transcribe and translate, checked once when built."""

    language: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    beam_size: int = 5
    temperature: float = 0.0
    initial_prompt: str | None = None
    word_timestamps: bool = False
    vad_filter: bool = False
    max_new_tokens: int | None = None
    long_form: LongForm = "auto"
    batch_size: int = 8
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.task not in ("transcribe", "translate"):
            raise InvalidOptionError(f"task must be transcribe or translate, not {self.task!r}", param="task")
        if self.long_form not in ("auto", "segmented", "sequential"):
            raise InvalidOptionError(
                f"long_form must be auto, segmented or sequential, not {self.long_form!r}", param="long_form"
            )
        check_range("beam_size", self.beam_size, 1, 16)
        check_range("batch_size", self.batch_size, 1, 64)
        check_range("temperature", self.temperature, 0.0, 1.0)
        if self.max_new_tokens is not None:
            check_range("max_new_tokens", self.max_new_tokens, 1, 440)
        if self.language is not None and (not isinstance(self.language, str) or not self.language.isalpha()):
            raise InvalidOptionError(f"language must be a language code such as 'en', not {self.language!r}", param="language")

    @classmethod
    def build(cls, **options: Any) -> TranscribeOptions:
        """Build from loose keyword options, naming any that harken does not know."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidOptionError(f"unknown option {unknown[0]!r}", param=unknown[0])
        return cls(**{k: v for k, v in options.items() if v is not None or k == "language"})

    def cache_key(self) -> str:
        """A stable text form; batch_size is left out because it does not change the result."""
        data = asdict(self)
        data.pop("batch_size")
        return json.dumps(data, sort_keys=True)


def check_range(name: str, value: Any, lo: float, hi: float) -> None:
    """One plain error for a number outside [lo, hi] (or not a number), naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise InvalidOptionError(f"{name} must be between {lo:g} and {hi:g}, not {value!r}", param=name)


@dataclass(frozen=True)
class EngineTranscript:
    """What an engine returns; the Service adds model name, audio facts and timings."""

    segments: tuple[Segment, ...]
    language: str
    language_probability: float
    warnings: tuple[TranscriptWarning, ...] = ()


@runtime_checkable
class Engine(Protocol):
    """What every engine has. The methods a task needs follow from `capabilities`:
    TRANSCRIBE/TRANSLATE -> SpeechEngine, CHAT -> engines.chat.ChatEngine."""

    capabilities: Capability
    window_s: float
    batches: bool

    def warmup(self) -> None: ...

    def close(self) -> None: ...


# Told, as a clip is decoded, how many of its seconds are done and how many it has in all.
OnProgress = Callable[[float, float], None]
OnText = Callable[[str], None]  # receives text deltas as an engine produces them


@dataclass(frozen=True)
class Watch:
    """What one caller hears while its clip is decoded, from a worker thread.

    `progress(done_s, total_s)` as audio is decoded; `text(delta)` with text that is final, in
    order: the deltas only ever append, and together they are exactly the transcript's text.
    """

    progress: OnProgress | None = None
    text: OnText | None = None


@runtime_checkable
class SpeechEngine(Engine, Protocol):
    def transcribe(self, samples: np.ndarray, options: TranscribeOptions) -> EngineTranscript: ...

    def transcribe_batch(
        self, clips: list[np.ndarray], options: TranscribeOptions, watches: Sequence[Watch | None] | None = None,
    ) -> list[EngineTranscript]:
        """Several clips in one call; an engine that does not batch loops over them. `watches`,
        when given, holds one Watch (or None) per clip."""
        ...

    def detect_language(self, samples: np.ndarray) -> tuple[str, float, list[tuple[str, float]]]: ...
