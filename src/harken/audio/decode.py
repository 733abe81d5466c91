"""Decode any container FFmpeg reads (through PyAV) into float32 mono 16 kHz samples.

Decoding streams: each frame is downmixed and resampled as it arrives, and its duration counted,
so a file that declares no length (or lies about it) is stopped at the limit, and memory holds
only the 16 kHz mono result, never the source's frames.
"""

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
from harken.files import describe_os_error, read_regular

__all__ = ["SAMPLE_RATE", "Audio", "AudioSource", "RawAudio", "decode_audio", "load_audio", "named_bytes", "read_audio"]

SAMPLE_RATE = 16_000

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*),(?P<data>.*)$", re.S)

# What PyAV raises on hostile or broken input besides FFmpeg's own errors (found by fuzzing:
# streams without a decoder, layouts that change mid-stream, absurd parameters).
_BAD_INPUT = (av.error.FFmpegError, ValueError, TypeError, AttributeError, IndexError, OverflowError, ZeroDivisionError)


@dataclass(frozen=True)
class Audio:
    """Decoded audio plus what was known about its source."""

    samples: np.ndarray = field(repr=False)
    sha256: str
    source_rate: int
    source_channels: int
    source_format: str
    name: str | None = None

    def __post_init__(self) -> None:
        # Decoding refuses an empty file; this catches an Audio built by hand, for every task alike.
        if not len(self.samples):
            raise EmptyAudioError(f"{self.name or 'audio'}: the audio contains no samples")

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True)
class RawAudio:
    """The source bytes, read and hashed but not decoded: enough for a cache lookup."""

    data: bytes = field(repr=False)
    sha256: str
    name: str | None = None


def named_bytes(data: bytes, name: str | None) -> io.BytesIO:
    """Bytes that load_audio names in its messages as given (a client's name, never a server path)."""
    buffer = io.BytesIO(data)
    buffer.name = name or "audio"
    return buffer


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
    label = raw.name or "audio"
    try:
        container = av.open(io.BytesIO(raw.data), mode="r", metadata_errors="ignore")
    except _BAD_INPUT:
        raise AudioDecodeError(f"{label}: not a decodable audio file") from None
    with container:
        stream = _audio_stream(container, label)
        declared = _declared_duration(container, stream)
        if max_duration is not None and declared is not None and declared > max_duration:
            raise AudioTooLongError(_too_long(label, f"{declared:.1f} s is", max_duration))
        sink = _MonoSink(label, max_duration, declared)
        try:
            for frame in container.decode(stream):
                sink.add(frame)
            sink.finish()
            fmt = f"{container.format.name.split(',')[0]}/{stream.codec_context.name}"
        except _BAD_INPUT:
            raise AudioDecodeError(f"{label}: the audio data is corrupt or truncated") from None
    samples = sink.samples()
    if samples.size == 0:
        raise EmptyAudioError(f"{label}: the file contains no samples")
    if sink.nonfinite == sink.source_samples:
        raise AudioDecodeError(f"{label}: every sample is NaN or infinite")
    return Audio(samples, raw.sha256, sink.source_rate, sink.source_channels, fmt, raw.name)


def _audio_stream(container: av.container.InputContainer, label: str) -> av.AudioStream:
    """The first audio stream FFmpeg has a decoder for."""
    streams = container.streams.audio
    if not streams:
        raise NoAudioStreamError(f"{label}: the file has no audio stream")
    for stream in streams:
        if stream.codec_context is not None:
            return stream
    raise AudioDecodeError(f"{label}: no decoder for the audio codec in this file")


class _MonoSink:
    """Frames in, 16 kHz mono float32 out, counted against the duration limit as they come.

    Frames become packed float (one plane whatever the channel count: planar frames of 8 or
    more channels crash PyAV's `to_ndarray`), are averaged to mono, then resampled by soxr. A
    change of layout or rate mid-stream flushes the old converters and starts new ones.
    """

    def __init__(self, label: str, max_duration: float | None, declared: float | None) -> None:
        self.label, self.max_duration = label, max_duration
        self.limit = None if max_duration is None else int(max_duration * SAMPLE_RATE)
        self.source_rate = self.source_channels = 0
        self.source_samples = self.nonfinite = 0
        self._key: tuple | None = None
        self._resampler: av.AudioResampler | None = None
        self._soxr: soxr.ResampleStream | None = None
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        # Room for what the file declares (a guess, never trusted beyond the limit or an hour),
        # grown by doubling.
        expected = SAMPLE_RATE * min(declared or 30.0, max_duration or float("inf"), 3600.0)
        self._buffer = np.empty(int(expected) + SAMPLE_RATE, dtype=np.float32)
        self._size = 0

    def add(self, frame: av.AudioFrame) -> None:
        channels, rate = len(frame.layout.channels), frame.sample_rate
        if channels < 1 or rate < 1:
            raise ValueError("a frame without channels or sample rate")
        key = (frame.format.name, frame.layout.name, channels, rate)
        if key != self._key:
            self._flush(rate_changes=self._key is not None and rate != self._key[3])
            if self._key is None:
                self.source_rate, self.source_channels = rate, channels
            self._key = key
            self._resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=rate)
        for out in self._resampler.resample(frame):
            self._take(out)

    def finish(self) -> None:
        self._flush(rate_changes=True)

    def samples(self) -> np.ndarray:
        # The resampler can overshoot full scale a little: clip again, as 16-bit PCM would.
        samples = self._buffer[: self._size]
        return np.clip(samples, -1.0, 1.0, out=samples)

    def _flush(self, *, rate_changes: bool) -> None:
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                self._take(out)
            self._resampler = None
        self._mono()
        if rate_changes and self._soxr is not None:
            self._append(self._soxr.resample_chunk(np.zeros(0, np.float32), last=True))
            self._soxr = None

    def _take(self, frame: av.AudioFrame) -> None:
        # Frames are gathered into about a second of audio before the numpy and soxr work, which
        # would otherwise cost more per frame than decoding does.
        channels = len(frame.layout.channels)
        self._pending.append(frame.to_ndarray().reshape(-1, channels))
        self._pending_n += frame.samples
        if self._pending_n >= self._key[3]:
            self._mono()

    def _mono(self) -> None:
        if not self._pending:
            return
        packed = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending, self._pending_n = [], 0
        self.source_samples += len(packed)
        bad = ~np.isfinite(packed)
        if bad.any():  # NaN and infinity carry no signal: silence
            self.nonfinite += int(bad.any(axis=1).sum())
            packed = np.where(bad, np.float32(0.0), packed)
        # Beyond full scale is clipped, as 16-bit PCM would (Whisper's own loaders go through it);
        # done before averaging and resampling, so that near-float-max values cannot overflow.
        np.clip(packed, -1.0, 1.0, out=packed)
        mono = packed[:, 0] if packed.shape[1] == 1 else packed.mean(axis=1, dtype=np.float32)
        rate = self._key[3]
        if rate == SAMPLE_RATE:
            self._append(mono)
            return
        if self._soxr is None:
            self._soxr = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        self._append(self._soxr.resample_chunk(mono))

    def _append(self, chunk: np.ndarray) -> None:
        end = self._size + len(chunk)
        if self.limit is not None and end > self.limit:
            raise AudioTooLongError(_too_long(self.label, "the audio runs", self.max_duration or 0))
        if end > len(self._buffer):
            size = max(end, min(2 * len(self._buffer), self.limit or 2 * len(self._buffer)))
            grown = np.empty(size, dtype=np.float32)
            grown[: self._size] = self._buffer[: self._size]
            self._buffer = grown
        self._buffer[self._size : end] = chunk
        self._size = end


def _too_long(label: str, what: str, limit: float) -> str:
    return f"{label}: {what} longer than the {limit:g} s limit"


def _read_source(source: AudioSource, name: str | None) -> tuple[bytes, str | None]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name
    if isinstance(source, str) and source.startswith("data:"):
        return _decode_data_url(source), name or "data URL"
    if isinstance(source, (str, os.PathLike)):
        try:
            return read_regular(Path(source)), name or str(source)
        except OSError as exc:
            raise AudioNotFoundError(f"{source}: {describe_os_error(exc)}") from None
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
    """What the file says its length is, if that is a positive number of seconds at all."""
    declared = None
    if stream.duration is not None and stream.time_base is not None:
        declared = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        declared = container.duration / av.time_base
    return declared if declared is not None and 0 < declared < float("inf") else None
