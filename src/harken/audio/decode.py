"""Decode any container FFmpeg reads (through PyAV) into float32 mono 16 kHz samples."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Union

import av
import numpy as np
import soxr

from harken.errors import (
    AudioDecodeError,
    AudioNotFoundError,
    AudioTooLongError,
    EmptyAudioError,
    NoAudioStreamError,
)

__all__ = ["SAMPLE_RATE", "Audio", "AudioSource", "RawAudio", "decode_audio", "load_audio", "read_audio"]

SAMPLE_RATE = 16_000

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*),(?P<data>.*)$", re.S)


@dataclass(frozen=True)
class Audio:
    """Decoded audio plus what was known about its source."""

    samples: np.ndarray = field(repr=False)
    sha256: str
    source_rate: int
    source_channels: int
    source_format: str
    name: str | None = None

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True)
class RawAudio:
    """The source bytes, read and hashed but not decoded: enough for a cache lookup."""

    data: bytes = field(repr=False)
    sha256: str
    name: str | None = None


def read_audio(source: AudioSource, *, name: str | None = None) -> RawAudio:
    """Read `source` (a path, raw bytes, a binary file object or a `data:` URL) without decoding."""
    data, name = _read_source(source, name)
    if not data:
        raise EmptyAudioError(f"{name or 'audio'}: the file is empty")
    return RawAudio(data, hashlib.sha256(data).hexdigest(), name)


def load_audio(source: AudioSource, *, max_duration: float | None = None, name: str | None = None) -> Audio:
    """Read and decode `source` (a path, raw bytes, a binary file object or a `data:` URL).

    Raises a subclass of AudioError with a plain message for anything that is not usable audio.
    """
    return decode_audio(read_audio(source, name=name), max_duration=max_duration)


def decode_audio(raw: RawAudio, *, max_duration: float | None = None) -> Audio:
    """Decode read bytes to float32 mono 16 kHz, keeping what is known of the source."""
    data, name, sha = raw.data, raw.name, raw.sha256
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError:
        raise AudioDecodeError(f"{name or 'audio'}: not a decodable audio file") from None
    with container:
        if not container.streams.audio:
            raise NoAudioStreamError(f"{name or 'audio'}: the file has no audio stream")
        stream = container.streams.audio[0]
        declared = _declared_duration(container, stream)
        if max_duration is not None and declared is not None and declared > max_duration:
            raise AudioTooLongError(_too_long(name, declared, max_duration))
        samples, rate, channels = _decode_stream(container, stream, name)
        fmt = f"{container.format.name.split(',')[0]}/{stream.codec_context.name}"
    if samples.size == 0:
        raise EmptyAudioError(f"{name or 'audio'}: the file contains no samples")
    mono = samples.mean(axis=0) if samples.shape[0] > 1 else samples[0]
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if max_duration is not None and len(mono) / SAMPLE_RATE > max_duration:
        raise AudioTooLongError(_too_long(name, len(mono) / SAMPLE_RATE, max_duration))
    return Audio(mono, sha, rate, channels, fmt, name)


def _too_long(name: str | None, seconds: float, limit: float) -> str:
    return f"{name or 'audio'}: {seconds:.1f} s is longer than the {limit:.0f} s limit"


def _read_source(source: AudioSource, name: str | None) -> tuple[bytes, str | None]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name
    if isinstance(source, str) and source.startswith("data:"):
        return _decode_data_url(source), name or "data URL"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise AudioNotFoundError(f"{path}: no such file")
        return path.read_bytes(), name or str(path)
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise AudioDecodeError("the file object must be opened in binary mode")
        return bytes(data), name or getattr(source, "name", None)
    raise AudioDecodeError(f"cannot read audio from a {type(source).__name__}")


def _decode_data_url(url: str) -> bytes:
    match = _DATA_URL.match(url)
    if not match or ";base64" not in (match["params"] or ""):
        raise AudioDecodeError("a data: URL must be base64 encoded (data:audio/wav;base64,...)")
    try:
        return base64.b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError):
        raise AudioDecodeError("the data: URL is not valid base64") from None


def _declared_duration(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _decode_stream(
    container: av.container.InputContainer, stream: av.AudioStream, name: str | None
) -> tuple[np.ndarray, int, int]:
    """Return (channels x samples float32, sample rate, channel count)."""
    # Planar float keeps each channel in its own row whatever the codec's native layout.
    resampler = av.AudioResampler(format="fltp")
    chunks: list[np.ndarray] = []
    rate = stream.rate or 0
    channels = stream.channels or 0
    try:
        for frame in container.decode(stream):
            rate, channels = frame.sample_rate, len(frame.layout.channels)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    except av.error.FFmpegError:
        raise AudioDecodeError(f"{name or 'audio'}: the audio data is corrupt or truncated") from None
    if not chunks:
        return np.zeros((1, 0), dtype=np.float32), rate, channels
    return np.concatenate(chunks, axis=1), rate, channels
