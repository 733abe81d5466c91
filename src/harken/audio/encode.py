"""Encode speech to the OpenAI speech formats with PyAV, whole or progressively (for streaming).

mp3, opus (in Ogg, at 48 kHz, the only rates Opus takes), aac (ADTS), flac, wav (16-bit) and
pcm (raw 16-bit little-endian at 24 kHz, as OpenAI sends it). A streaming encoder writes to a
non-seekable sink and hands on whatever the muxer produced after each sentence.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import soxr

from harken.errors import InvalidOptionError

__all__ = ["SpeechFormat", "SPEECH_FORMATS", "get_speech_format", "encode", "encode_stream"]


@dataclass(frozen=True)
class SpeechFormat:
    name: str
    container: str | None  # None: raw PCM, no container
    codec: str
    media_type: str
    rate: int | None = None  # forced output rate; None keeps the voice's


SPEECH_FORMATS: dict[str, SpeechFormat] = {
    f.name: f
    for f in (
        SpeechFormat("mp3", "mp3", "libmp3lame", "audio/mpeg"),
        SpeechFormat("opus", "ogg", "libopus", "audio/ogg", rate=48_000),
        SpeechFormat("aac", "adts", "aac", "audio/aac"),
        SpeechFormat("flac", "flac", "flac", "audio/flac"),
        SpeechFormat("wav", "wav", "pcm_s16le", "audio/wav"),
        SpeechFormat("pcm", None, "pcm_s16le", "audio/L16", rate=24_000),
    )
}


def get_speech_format(name: str) -> SpeechFormat:
    try:
        return SPEECH_FORMATS[name]
    except KeyError:
        raise InvalidOptionError(
            f"unknown audio format {name!r} (choose from {', '.join(SPEECH_FORMATS)})", param="response_format"
        ) from None


def encode(samples: np.ndarray, rate: int, fmt: SpeechFormat) -> bytes:
    return b"".join(encode_stream([samples], rate, fmt))


def encode_stream(chunks: Iterable[np.ndarray], rate: int, fmt: SpeechFormat) -> Iterator[bytes]:
    """Encode float32 mono chunks as they come, yielding bytes as soon as the muxer writes them."""
    out_rate = fmt.rate or rate
    if fmt.container is None:
        for chunk in chunks:
            yield _pcm16(_resample(chunk, rate, out_rate))
        return
    import av

    sink = _Sink()
    container = av.open(sink, "w", format=fmt.container)
    stream = container.add_stream(fmt.codec, rate=out_rate, layout="mono")
    try:
        for chunk in chunks:
            frame = av.AudioFrame.from_ndarray(_resample(chunk, rate, out_rate)[None, :], format="flt", layout="mono")
            frame.sample_rate = out_rate
            for packet in stream.encode(frame):
                container.mux(packet)
            if data := sink.take():
                yield data
        for packet in stream.encode(None):
            container.mux(packet)
    finally:
        container.close()
    if data := sink.take():
        yield data


def _resample(chunk: np.ndarray, rate: int, out_rate: int) -> np.ndarray:
    chunk = np.asarray(chunk, dtype=np.float32)
    return chunk if rate == out_rate else soxr.resample(chunk, rate, out_rate).astype(np.float32)


def _pcm16(chunk: np.ndarray) -> bytes:
    return (np.clip(chunk, -1.0, 1.0) * 32767).astype("<i2").tobytes()


class _Sink(io.RawIOBase):
    """A write-only, non-seekable buffer: what a network stream looks like to a muxer."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data) -> int:
        self.buffer += bytes(data)
        return len(data)

    def take(self) -> bytes:
        data, self.buffer = bytes(self.buffer), bytearray()
        return data
