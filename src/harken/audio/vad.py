"""Voice activity as audio arrives: Silero's speech probability per 32 ms frame, and turns.

Silero scores each 512-sample frame from that frame and the 64 samples before it, so scoring a
stream frame by frame gives exactly the values it gives on the whole clip. A turn starts at
the first frame at or over `threshold` and ends after `silence_ms` of frames under Silero's
own lower threshold (threshold - 0.15, as in its speech-timestamp rule), which keeps one
pause-free utterance from flickering between speech and silence.
"""

from __future__ import annotations

from dataclasses import dataclass

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

        self.model = get_vad_model()
        self.pending = np.zeros(0, np.float32)
        self.context = np.zeros(FRAME, np.float32)  # the frame before the next one (only its tail counts)

    def feed(self, samples: np.ndarray) -> np.ndarray:
        self.pending = np.concatenate([self.pending, samples.astype(np.float32, copy=False)])
        whole = len(self.pending) // FRAME * FRAME
        if whole == 0:
            return np.zeros(0, np.float32)
        frames, self.pending = self.pending[:whole], self.pending[whole:]
        probs = np.asarray(self.model(np.concatenate([self.context, frames]))).reshape(-1)[1:]
        self.context = frames[-FRAME:]
        return probs


@dataclass(frozen=True)
class Turn:
    """A change of turn at a frame: `started` (speech at `frame`) or stopped (silence long enough)."""

    started: bool
    frame: int  # frames since the stream began: the first speech frame, or the frame the silence ended on


class TurnDetector:
    def __init__(self, threshold: float = 0.5, silence_ms: int = 500) -> None:
        self.threshold = threshold
        self.low = max(0.01, threshold - _HYSTERESIS)
        self.silence_frames = max(1, round(silence_ms / 1000 * SAMPLE_RATE / FRAME))
        self.frames = 0
        self.speaking = False
        self.quiet = 0

    def update(self, probs: np.ndarray) -> list[Turn]:
        turns: list[Turn] = []
        for p in probs:
            if not self.speaking and p >= self.threshold:
                self.speaking, self.quiet = True, 0
                turns.append(Turn(True, self.frames))
            elif self.speaking:
                self.quiet = self.quiet + 1 if p < self.low else 0
                if self.quiet >= self.silence_frames:
                    self.speaking = False
                    turns.append(Turn(False, self.frames + 1))
            self.frames += 1
        return turns

    def reset(self) -> None:
        self.speaking, self.quiet = False, 0
