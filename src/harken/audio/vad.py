"""Voice activity as audio arrives: Silero's speech probability per 32 ms frame, and turns.

Silero scores each 512-sample frame from that frame, the 64 samples before it and its recurrent
state; the stream carries both from call to call, so scoring a stream chunk by chunk gives
exactly the values faster-whisper's VAD gives on the whole clip. A turn starts at
the first frame at or over `threshold` and ends after `silence_ms` of frames under Silero's
own lower threshold (threshold - 0.15, as in its speech-timestamp rule), which keeps one
pause-free utterance from flickering between speech and silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from harken.audio.decode import SAMPLE_RATE

__all__ = ["FRAME", "SpeechProbability", "TurnDetector", "Turn"]

FRAME = 512  # Silero's window at 16 kHz (32 ms)
_CONTEXT = 64  # the samples before a frame that Silero looks at
_HYSTERESIS = 0.15


class SpeechProbability:
    """Silero's probability for every whole frame fed so far; `feed` returns the new ones."""

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model

        self.session = get_vad_model().session  # faster-whisper's Silero v6 ONNX session
        self.pending = np.zeros(0, np.float32)
        self.context = np.zeros((1, _CONTEXT), np.float32)  # the tail of the frame before the next one
        self.h = np.zeros((1, 1, 128), np.float32)
        self.c = np.zeros((1, 1, 128), np.float32)

    def feed(self, samples: np.ndarray) -> np.ndarray:
        self.pending = np.concatenate([self.pending, samples.astype(np.float32, copy=False)])
        whole = len(self.pending) // FRAME * FRAME
        if whole == 0:
            return np.zeros(0, np.float32)
        frames, self.pending = self.pending[:whole].reshape(-1, FRAME), self.pending[whole:]
        # As faster-whisper's SileroVADModel lays a clip out: each row a frame after its context.
        contexts = np.concatenate([self.context, frames[:-1, -_CONTEXT:]])
        rows = np.concatenate([contexts, frames], axis=1)
        out, self.h, self.c = self.session.run(None, {"input": rows, "h": self.h, "c": self.c})
        self.context = frames[-1:, -_CONTEXT:]
        return np.asarray(out).reshape(-1)


@dataclass(frozen=True)
class Turn:
    """A change in a turn, at a frame (frames since the stream began).

    `started`: speech at `frame`. `paused`: the speech ended `tail` frames ago, at `frame` the
    utterance's audio is complete unless speech resumes. `resumed`: speech again before the
    silence was long enough. `stopped`: the silence was long enough; `cut` is the frame the
    utterance's audio ends at (the frame it paused at).
    """

    kind: Literal["started", "paused", "resumed", "stopped"]
    frame: int
    cut: int = 0


class TurnDetector:
    """Turns from speech probabilities. `tail_ms` of silence is kept at an utterance's end:
    enough that Whisper hears the last word end, short enough to decode it while the rest of the
    silence that ends the turn is still arriving."""

    def __init__(self, threshold: float = 0.5, silence_ms: int = 500, tail_ms: int = 200) -> None:
        self.threshold = threshold
        self.low = max(0.01, threshold - _HYSTERESIS)
        self.silence_frames = max(1, round(silence_ms / 1000 * SAMPLE_RATE / FRAME))
        self.tail_frames = min(self.silence_frames, max(1, round(tail_ms / 1000 * SAMPLE_RATE / FRAME)))
        self.frames = 0
        self.speaking = False
        self.quiet = 0  # frames under the lower threshold since the last speech

    def update(self, probs: np.ndarray) -> list[Turn]:
        turns: list[Turn] = []
        for p in probs:
            if not self.speaking:
                if p >= self.threshold:
                    self.speaking, self.quiet = True, 0
                    turns.append(Turn("started", self.frames))
            elif p >= self.low:
                if self.quiet >= self.tail_frames:
                    turns.append(Turn("resumed", self.frames))
                self.quiet = 0
            else:
                self.quiet += 1
                end = self.frames + 1
                if self.quiet == self.tail_frames:
                    turns.append(Turn("paused", end))
                if self.quiet >= self.silence_frames:
                    self.speaking = False
                    turns.append(Turn("stopped", end, cut=end - (self.quiet - self.tail_frames)))
            self.frames += 1
        return turns

    @property
    def paused(self) -> bool:
        """In speech, but quiet for a moment now."""
        return self.speaking and self.quiet > 0

    def reset(self) -> None:
        self.speaking, self.quiet = False, 0
