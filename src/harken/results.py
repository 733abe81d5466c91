"""Typed results that every front door shares."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["Word", "Segment", "SpeakerTurn", "Diarization", "TranscriptWarning", "Timings", "Transcript", "LanguageGuess", "ChatResult", "WindowAnswer", "SpeechAudio"]


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    tokens: tuple[int, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float = 0.0
    words: tuple[Word, ...] | None = None
    speaker: str | None = None  # set when the transcript was diarized: who says this segment


@dataclass(frozen=True)
class SpeakerTurn:
    """One stretch of speech by one speaker."""

    start: float
    end: float
    speaker: str


@dataclass(frozen=True)
class TranscriptWarning:
    """Something a user should know about a transcript: harken never fails silently.

    `code` is stable (language_mismatch, untranscribed_speech); `start`/`end` give the stretch
    of audio it is about, when it is about one.
    """

    code: str
    message: str
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class Timings:
    """Where the time went. `rtf` is inference time over audio time (lower is faster)."""

    decode_s: float = 0.0
    inference_s: float = 0.0
    total_s: float = 0.0
    audio_s: float = 0.0
    cache_hit: bool = False

    @property
    def rtf(self) -> float:
        return self.inference_s / self.audio_s if self.audio_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rtf": round(self.rtf, 4)}


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    language_probability: float
    duration: float
    segments: tuple[Segment, ...]
    model: str
    task: str = "transcribe"
    timings: Timings = field(default_factory=Timings)
    audio_sha256: str | None = None  # of the source bytes: ties a result to its input in logs and audits
    warnings: tuple[TranscriptWarning, ...] = ()

    @property
    def tokens_generated(self) -> int:
        return sum(len(s.tokens) for s in self.segments)

    def with_timings(self, timings: Timings) -> Transcript:
        return replace(self, timings=timings)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["timings"] = self.timings.to_dict()
        out["tokens_generated"] = self.tokens_generated
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        segments = tuple(
            Segment(
                **{
                    **s,
                    "tokens": tuple(s["tokens"]),
                    "words": None if s["words"] is None else tuple(Word(**w) for w in s["words"]),
                }
            )
            for s in data["segments"]
        )
        timings = {k: v for k, v in data["timings"].items() if k != "rtf"}
        fields = {k: data[k] for k in ("text", "language", "language_probability", "duration", "model", "task")}
        warnings = tuple(TranscriptWarning(**w) for w in data.get("warnings", ()))
        return cls(segments=segments, timings=Timings(**timings), audio_sha256=data.get("audio_sha256"),
                   warnings=warnings, **fields)


@dataclass(frozen=True)
class Diarization:
    """Who spoke when. `speakers` in order of first appearance: capital letters (A, B, ...), or
    the names given with reference clips for the voices that matched them."""

    turns: tuple[SpeakerTurn, ...]
    speakers: tuple[str, ...]
    duration: float
    model: str
    timings: Timings = field(default_factory=Timings)
    audio_sha256: str | None = None
    warnings: tuple[TranscriptWarning, ...] = ()

    def with_timings(self, timings: Timings) -> Diarization:
        return replace(self, timings=timings)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["timings"] = self.timings.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Diarization:
        return cls(
            turns=tuple(SpeakerTurn(**t) for t in data["turns"]),
            speakers=tuple(data["speakers"]),
            duration=data["duration"],
            model=data["model"],
            timings=Timings(**{k: v for k, v in data["timings"].items() if k != "rtf"}),
            audio_sha256=data.get("audio_sha256"),
            warnings=tuple(TranscriptWarning(**w) for w in data.get("warnings", ())),
        )


@dataclass(frozen=True)
class LanguageGuess:
    language: str
    probability: float
    all_probabilities: tuple[tuple[str, float], ...]
    model: str
    timings: Timings = field(default_factory=Timings)


@dataclass(frozen=True)
class WindowAnswer:
    """A long clip's window and what the model said of it."""

    start: float
    end: float
    text: str
    result: dict[str, Any] | None = None


@dataclass(frozen=True)
class ChatResult:
    """An audio-language model's answer: chat, ask, caption or analyze (with `result` parsed)."""

    text: str
    model: str
    task: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    timings: Timings = field(default_factory=Timings)
    result: dict[str, Any] | None = None
    audio_sha256: tuple[str, ...] = ()
    windows: tuple[WindowAnswer, ...] = ()  # set when a long clip was answered window by window
    speech: SpeechAudio | None = None  # the answer spoken, when asked for (Service.chat(speak=...))

    def with_timings(self, timings: Timings) -> ChatResult:
        return replace(self, timings=timings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the speech is described (format, rate, duration, voice), not included."""
        out = asdict(replace(self, speech=None))
        out["timings"] = self.timings.to_dict()
        out["audio_sha256"] = list(self.audio_sha256)
        if self.result is None:
            out.pop("result")
        if not self.windows:
            out.pop("windows")
        out.pop("speech")
        if self.speech is not None:
            out["speech"] = self.speech.describe()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChatResult:
        timings = Timings(**{k: v for k, v in data["timings"].items() if k != "rtf"})
        fields_ = {k: data[k] for k in ("text", "model", "task", "finish_reason", "prompt_tokens", "completion_tokens")}
        windows = tuple(WindowAnswer(**w) for w in data.get("windows", ()))
        return cls(timings=timings, result=data.get("result"), audio_sha256=tuple(data.get("audio_sha256", ())),
                   windows=windows, **fields_)


@dataclass(frozen=True)
class SpeechAudio:
    """Synthesised speech, encoded. `voice` is the Piper voice, or the speaker of a model's own
    voice (`model` names the model that spoke either way); `transcript` is what it says: the text
    given to Piper, or a talker model's own words."""

    data: bytes = field(repr=False)
    format: str
    media_type: str
    sample_rate: int
    duration: float
    voice: str
    timings: Timings = field(default_factory=Timings)
    model: str = ""
    transcript: str = ""

    def describe(self) -> dict[str, Any]:
        return {"format": self.format, "media_type": self.media_type, "sample_rate": self.sample_rate,
                "duration": self.duration, "voice": self.voice, "model": self.model, "bytes": len(self.data)}
