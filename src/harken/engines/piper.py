"""Piper neural text-to-speech (ONNX, CPU), one sentence at a time so answers can stream."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harken.engines.base import Capability, check_range
from harken.errors import InvalidOptionError, ModelLoadError, UnsupportedModelError, require

__all__ = ["PiperEngine", "SpeakOptions", "SpeechChunk", "MAX_INPUT_CHARS", "pieces"]

MAX_INPUT_CHARS = 4096
# The longest text one synthesis call gets: its memory grows with the audio it makes (about
# 20 MB a second), so one unpunctuated 4,000-character sentence took 6 GB. 200 characters is
# about 13 s of speech; longer sentences are cut at a comma, or else between words.
MAX_PIECE_CHARS = 200


@dataclass(frozen=True)
class SpeakOptions:
    speed: float = 1.0

    def __post_init__(self) -> None:
        check_range("speed", self.speed, 0.25, 4.0)


@dataclass(frozen=True)
class SpeechChunk:
    samples: np.ndarray  # float32 mono in [-1, 1]
    rate: int
    text: str  # the sentence's phonemes, joined: what this chunk says


# Control characters are not speech, and a NUL cuts the text short for espeak (a ValueError).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def check_text(text: str) -> str:
    """The text to speak with control characters blanked; InvalidOptionError when none is left."""
    if isinstance(text, str):
        text = _CONTROL.sub(" ", text)
    if not isinstance(text, str) or not text.strip():
        raise InvalidOptionError("the text to speak is empty", param="input")
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidOptionError(f"the text is {len(text)} characters; the limit is {MAX_INPUT_CHARS}", param="input")
    return text


class PiperEngine:
    capabilities = Capability.SPEAK
    window_s = 0.0
    batches = False

    def __init__(self, path: Path) -> None:
        PiperVoice = require("piper", "tts", "speech").PiperVoice
        models = sorted(path.glob("*.onnx"))
        if not models or not Path(str(models[0]) + ".json").is_file():
            raise UnsupportedModelError(f"{path.name}: not a Piper voice directory (an .onnx with its .onnx.json)")
        try:
            self.voice = PiperVoice.load(models[0], config_path=str(models[0]) + ".json")
        except Exception as exc:  # onnxruntime raises its own types
            raise ModelLoadError(f"{models[0].name}: cannot load the voice: {str(exc).splitlines()[0][:200]}") from None
        self.rate = int(self.voice.config.sample_rate)
        self.name = models[0].stem
        # One sentence at a time per voice: onnxruntime grows its memory arena for every run in
        # flight and never gives it back (8 concurrent speakers held 3 GB; one at a time, 0.5 GB,
        # and hardly slower, since each run already uses every core).
        self._lock = threading.Lock()

    def warmup(self) -> None:
        next(iter(self.speak("Ready.", SpeakOptions())), None)

    def close(self) -> None:
        self.voice = None

    def speak(self, text: str, options: SpeakOptions) -> Iterator[SpeechChunk]:
        """One chunk per sentence, as each is synthesised. A text with nothing the voice can say
        ("...", a lone symbol) is refused here, before the first chunk, not halfway through a
        response that has already begun."""
        text = check_text(text)
        if not any(self.voice.phonemize(text)):
            raise InvalidOptionError("the text holds nothing the voice can say", param="input")
        return self._synthesize(text, options)

    def _synthesize(self, text: str, options: SpeakOptions) -> Iterator[SpeechChunk]:
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=1.0 / options.speed)
        for piece in pieces(text):
            sentences = iter(self.voice.synthesize(piece, syn_config=config))
            while True:
                with self._lock:
                    chunk = next(sentences, None)
                if chunk is None:
                    break
                yield SpeechChunk(np.asarray(chunk.audio_float_array, dtype=np.float32), chunk.sample_rate,
                                  "".join(chunk.phonemes))


def pieces(text: str, limit: int = MAX_PIECE_CHARS) -> list[str]:
    """`text` cut into pieces of at most `limit` characters: after sentence punctuation where it
    can be, else at the last comma of the first half or more, else between words."""
    out: list[str] = []
    for part in re.split(r"(?<=[.!?;:])\s+", text.strip()):
        while len(part) > limit:
            window = part[:limit]
            cut = window.rfind(",") + 1
            if cut <= limit // 2:
                cut = window.rfind(" ")
            if cut <= 0:
                cut = limit  # one long word: cut it
            out.append(part[:cut].strip())
            part = part[cut:].strip()
        if part:
            out.append(part)
    return [p for p in out if p]
