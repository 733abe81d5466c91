"""What a chat-capable engine takes and returns: messages with text and audio parts, options."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from harken.engines.base import Engine, OnText, check_range

__all__ = ["TextPart", "AudioPart", "ChatMessage", "ChatOptions", "Waveform", "EngineReply", "OnText", "ChatEngine", "TalkingEngine"]

@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class AudioPart:
    samples: np.ndarray  # float32 mono 16 kHz
    sha256: str


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    parts: tuple[TextPart | AudioPart, ...]

    @property
    def audio(self) -> list[AudioPart]:
        return [p for p in self.parts if isinstance(p, AudioPart)]


@dataclass(frozen=True)
class ChatOptions:
    """Generation options, checked once. `json_schema` is canonical JSON text (or "{}" for any object)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    json_schema: str | None = None

    def __post_init__(self) -> None:
        check_range("max_new_tokens", self.max_new_tokens, 1, 32768)
        check_range("temperature", self.temperature, 0.0, 2.0)
        check_range("top_p", self.top_p, 0.0, 1.0)
        check_range("top_k", self.top_k, 0, 10_000)

    @staticmethod
    def schema_text(schema: dict[str, Any] | None) -> str | None:
        return None if schema is None else json.dumps(schema, separators=(",", ":"))  # key order is the answer's order

    def cache_key(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


@dataclass(frozen=True)
class Waveform:
    """Speech a model made: float32 mono samples at `rate`."""

    samples: np.ndarray = field(repr=False)
    rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate


@dataclass(frozen=True)
class EngineReply:
    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int
    speech: Waveform | None = None  # the answer in the model's own voice, when one was asked for


@runtime_checkable
class ChatEngine(Engine, Protocol):
    prompt_free_caption: bool  # a captioner describes audio unprompted

    def chat(self, messages: list[ChatMessage], options: ChatOptions, on_text: OnText | None = None) -> EngineReply: ...


@runtime_checkable
class TalkingEngine(ChatEngine, Protocol):
    """A chat engine that can answer in its own voice (a Qwen2.5-Omni talker): `voices` are its
    speakers, `default_voice` one of them, and speech comes at `speech_rate`."""

    voices: tuple[str, ...]
    default_voice: str | None
    speech_rate: int | None

    def chat(self, messages: list[ChatMessage], options: ChatOptions, on_text: OnText | None = None, *,
             voice: str | None = None) -> EngineReply: ...

    def say(self, text: str, voice: str, *, seed: int | None = None) -> EngineReply: ...

    def check_speech(self, voice: str, options: ChatOptions) -> None: ...
