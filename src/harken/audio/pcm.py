"""Raw audio as it streams in (realtime sockets, Wyoming, stdin): bytes to float32 mono 16 kHz.

Chunks may split a sample anywhere; the resampler (soxr's stream form) keeps its filter state
across chunks, so the result does not depend on how the bytes were cut.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import soxr

from harken.audio.decode import SAMPLE_RATE
from harken.errors import InvalidOptionError

__all__ = ["Encoding", "PcmStream"]

Encoding = Literal["pcm16", "pcmu", "pcma"]


def _g711_tables() -> dict[str, np.ndarray]:
    """ITU-T G.711 expansion: each of the 256 codes as a 16-bit linear value."""
    codes = np.arange(256, dtype=np.int32)
    u = ~codes & 0xFF
    ulaw = (((u & 0x0F) << 3) + 0x84 << ((u >> 4) & 7)) - 0x84
    ulaw = np.where(u & 0x80, -ulaw, ulaw)
    a = codes ^ 0x55
    exponent, mantissa = (a >> 4) & 7, a & 0x0F
    alaw = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    alaw = np.where(a & 0x80, alaw, -alaw)
    return {"pcmu": ulaw.astype(np.float32) / 32768.0, "pcma": alaw.astype(np.float32) / 32768.0}


_G711 = _g711_tables()


class PcmStream:
    """Little-endian 16-bit PCM, or G.711 mu-law / A-law, mono at `rate` Hz."""

    def __init__(self, encoding: Encoding = "pcm16", rate: int = 24_000) -> None:
        if encoding not in ("pcm16", "pcmu", "pcma"):
            raise InvalidOptionError(f"audio encoding must be pcm16, pcmu or pcma, not {encoding!r}", param="format")
        if not isinstance(rate, int) or not 8_000 <= rate <= 48_000:
            raise InvalidOptionError(f"sample rate must be 8000 to 48000 Hz, not {rate!r}", param="rate")
        self.encoding, self.rate = encoding, rate
        self.carry = b""
        self.resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")

    def feed(self, data: bytes) -> np.ndarray:
        return self._resample(self._samples(data), last=False)

    def flush(self) -> np.ndarray:
        """What the resampler still holds, at the end of the stream."""
        return self._resample(np.zeros(0, np.float32), last=True)

    def _samples(self, data: bytes) -> np.ndarray:
        if self.encoding != "pcm16":
            return _G711[self.encoding][np.frombuffer(data, np.uint8)]
        data = self.carry + data
        whole = len(data) // 2 * 2
        self.carry = data[whole:]
        return np.frombuffer(data[:whole], "<i2").astype(np.float32) / 32768.0

    def _resample(self, samples: np.ndarray, last: bool) -> np.ndarray:
        if self.resampler is None:
            return samples
        return self.resampler.resample_chunk(samples, last=last).astype(np.float32, copy=False)
