"""Speech out behind Service.speak and spoken chat answers: who speaks (a model's own talker or
a Piper voice), decided in `choose_voice` and nowhere else, and the speech encoded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from harken.audio.encode import encode, encode_stream, get_speech_format
from harken.engines.chat import EngineReply, Waveform
from harken.engines.piper import SpeakOptions, check_text, pieces
from harken.errors import InvalidOptionError, UnknownModelError, UnsupportedModelError
from harken.registry import OPENAI_VOICES, ModelEntry, Registry
from harken.results import ChatResult, SpeechAudio, Timings
from harken.runtime.scheduler import Scheduler

__all__ = ["SpeechTask", "SpeakAnswer", "VoiceChoice", "Spoken", "speak_answer", "speech_format"]


@dataclass(frozen=True)
class SpeakAnswer:
    """Ask for a chat answer spoken as well as written (`ChatResult.speech`). `voice`: one of the
    model's own speakers when it has a talker (Qwen2.5-Omni: Chelsie, Ethan), else a Piper voice;
    None or a stock OpenAI name: the model's own default speaker, or else the default Piper voice.
    `format`: mp3, opus, aac, flac, wav, pcm (pcm16 is OpenAI's name for pcm)."""

    voice: str | None = None
    format: str = "wav"


@dataclass(frozen=True)
class VoiceChoice:
    """Who speaks: a chat model's own talker as `speaker`, or (speaker None) the Piper voice `entry`."""

    entry: ModelEntry  # the talker model, or the Piper voice
    speaker: str | None = None

    @property
    def own(self) -> bool:
        return self.speaker is not None


@dataclass(frozen=True)
class Spoken:
    """A spoken answer asked for, and who speaks it."""

    request: SpeakAnswer
    choice: VoiceChoice



class SpeechTask:
    def __init__(self, registry: Registry, scheduler: Scheduler) -> None:
        self.registry, self.scheduler = registry, scheduler

    def spoken(self, result: ChatResult, spoken: Spoken, wave: Waveform | None = None) -> ChatResult:
        """`result` with its answer spoken: `wave` when the talker made it with the text, else read
        out by the chosen voice. No speech when the answer holds nothing to say."""
        start = time.perf_counter()
        fmt = speech_format(spoken.request.format)
        choice = spoken.choice
        try:
            if choice.own and wave is None:
                replies = list(self._own_voice(choice, result.text))
                wave = _joined([r.speech for r in replies if r.speech is not None], replies[0].speech.rate)
            if wave is not None:
                samples, rate = wave.samples, wave.rate
            else:
                samples, rate = self._piper_samples(self.registry.load(choice.entry.name).engine, result.text, 1.0)
        except InvalidOptionError:  # an empty answer, or only symbols: nothing to say
            return result
        synthesised = time.perf_counter()
        speech = _encoded(samples, rate, fmt, choice, result.text, start, synthesised)
        return replace(result, speech=speech)

    def choose_voice(self, voice: str | Path | None = None, model: str | Path | None = None) -> VoiceChoice:
        """Who speaks, decided here and nowhere else. A `model` with a talker (a full Qwen2.5-Omni
        checkpoint) speaks in its own voice: `voice` is then one of its speakers (any case), None or
        a stock OpenAI name (its default speaker), or a Piper voice (which reads instead). Any other
        model (none, tts-1, one without a talker) leaves the voice to Piper, unless `voice` names a
        talker model: that model's default speaker. A bad voice is an InvalidOptionError."""
        talker = self._talker(model) if model is not None else None
        if talker is None and voice is not None:  # `harken speak --voice omni`, or tts-1 with voice omni
            talker = self._talker(voice)
            voice = None if talker is not None else voice
        if talker is None:
            return VoiceChoice(self.registry.resolve_voice(voice))
        entry, engine = talker
        if voice is None or str(voice) in OPENAI_VOICES:
            return VoiceChoice(entry, engine.default_voice)
        speaker = {v.lower(): v for v in engine.voices}.get(str(voice).lower())
        if speaker is not None:
            return VoiceChoice(entry, speaker)
        try:
            return VoiceChoice(self.registry.resolve_voice(voice))
        except InvalidOptionError:
            raise InvalidOptionError(
                f"unknown voice {str(voice)!r}: {entry.name} speaks as {', '.join(engine.voices)} "
                "(or name a Piper voice; `harken voices` lists them)", param="voice",
            ) from None

    def _talker(self, name: str | Path) -> tuple[ModelEntry, Any] | None:
        """The entry and engine of `name` when it is a chat model with its own voice."""
        try:
            entry = self.registry.resolve(name)
        except (UnknownModelError, UnsupportedModelError):
            return None
        if entry.engine != "alm":
            return None
        engine = self.registry.load(entry.name).engine
        return (entry, engine) if getattr(engine, "voices", ()) else None

    def speak(
        self, text: str, *, voice: str | Path | None = None, speed: float = 1.0, format: str = "wav",
        model: str | Path | None = None,
    ) -> SpeechAudio:
        """Text to encoded speech: with a Piper voice (the embedded one by default), or, when
        `model` (or `voice`) names a model with a talker, in that model's own voice: the model is
        asked to say the text, sentence by sentence, so the speech is its rendition of it."""
        start = time.perf_counter()
        fmt = speech_format(format)
        choice = self.choose_voice(voice, model)
        if choice.own:
            replies = list(self._own_voice(choice, text, speed))
            wave = _joined([r.speech for r in replies], replies[0].speech.rate)
            samples, rate = wave.samples, wave.rate
            said = " ".join(r.text.strip() for r in replies if r.text.strip())
        else:
            samples, rate = self._piper_samples(self.registry.load(choice.entry.name).engine, text, speed)
            said = text
        return _encoded(samples, rate, fmt, choice, said, start, time.perf_counter())

    def speak_stream(
        self, text: str, *, voice: str | Path | None = None, speed: float = 1.0, format: str = "wav",
        model: str | Path | None = None,
    ) -> Iterator[bytes]:
        """Encoded speech sentence by sentence. Every request error is raised here, before the
        first byte; iterate the result to synthesise."""
        fmt = speech_format(format)
        choice = self.choose_voice(voice, model)
        if choice.own:
            replies = self._own_voice(choice, text, speed)  # checks now, speaks when iterated
            rate = self.registry.load(choice.entry.name).engine.speech_rate
            return encode_stream((r.speech.samples for r in replies), rate, fmt)
        engine = self.registry.load(choice.entry.name).engine
        chunks = engine.speak(text, SpeakOptions(speed))  # checks the text now, synthesises when iterated
        return encode_stream((c.samples for c in chunks), engine.rate, fmt)

    def _own_voice(self, choice: VoiceChoice, text: str, speed: float = 1.0) -> Iterator[EngineReply]:
        """The talker model's replies saying `text`, a sentence (at most 200 characters) each, queued
        on the model's worker one after another. The text and speed are checked now."""
        if SpeakOptions(speed).speed != 1.0:
            raise InvalidOptionError("a model's own voice has one speed: leave speed at 1.0, or use a Piper voice",
                                     param="speed")
        parts = pieces(check_text(text))
        if not parts:
            raise InvalidOptionError("the text to speak is empty", param="input")
        name, engine, speaker = choice.entry.name, self.registry.load(choice.entry.name).engine, choice.speaker

        def replies() -> Iterator[EngineReply]:
            for part in parts:
                future = self.scheduler.submit_call(name, engine, lambda part=part: engine.say(part, speaker))
                try:
                    yield future.result()
                finally:
                    future.cancel()  # a no-op once done; stops queued work when the caller gives up

        return replies()

    @staticmethod
    def _piper_samples(engine: Any, text: str, speed: float) -> tuple[np.ndarray, int]:
        chunks = list(engine.speak(text, SpeakOptions(speed)))
        rate = chunks[0].rate if chunks else engine.rate
        return (np.concatenate([c.samples for c in chunks]) if chunks else np.zeros(0, np.float32)), rate


def speak_answer(speak: SpeakAnswer | bool | None) -> SpeakAnswer | None:
    if speak is True:
        return SpeakAnswer()
    if speak is False or speak is None:
        return None
    if not isinstance(speak, SpeakAnswer):
        raise InvalidOptionError("speak takes True or a SpeakAnswer(voice, format)", param="speak")
    return speak


def speech_format(name: str):
    return get_speech_format("pcm" if name == "pcm16" else name)  # pcm16: OpenAI's chat name for raw pcm


def _joined(waves: list[Waveform], rate: int) -> Waveform:
    return Waveform(np.concatenate([w.samples for w in waves]) if waves else np.zeros(0, np.float32), rate)


def _encoded(samples: np.ndarray, rate: int, fmt: Any, choice: VoiceChoice, transcript: str, start: float,
             synthesised: float) -> SpeechAudio:
    data = encode(samples, rate, fmt)
    done = time.perf_counter()
    duration = len(samples) / rate
    return SpeechAudio(data, fmt.name, fmt.media_type, fmt.rate or rate, round(duration, 3),
                       choice.speaker or choice.entry.name, Timings(done - synthesised, synthesised - start, done - start, duration),
                       model=choice.entry.name, transcript=transcript)
