"""Hostile and odd audio files, built in a few bytes for the tests (every one was once a crash,
a 500 or a memory bomb)."""

from __future__ import annotations

import io
import math
import struct

import av
import numpy as np


def wav(samples: np.ndarray, rate: int = 16_000, *, tag: int | None = None) -> bytes:
    """A WAV of `samples` (frames x channels): int16 as PCM (tag 1), float32 as IEEE float (tag 3)."""
    samples = np.asarray(samples)
    channels = samples.shape[1] if samples.ndim == 2 else 1
    width = samples.dtype.itemsize
    tag = tag if tag is not None else (3 if samples.dtype.kind == "f" else 1)
    data = samples.astype(samples.dtype.newbyteorder("<")).tobytes()
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * width, channels * width, 8 * width)
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE" + \
        b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data


def aiff(samples: np.ndarray, rate: int = 16_000) -> bytes:
    """A 16-bit AIFF of int16 `samples` (frames x channels)."""
    frames, channels = samples.shape
    exponent = int(math.floor(math.log2(rate)))
    rate80 = struct.pack(">HQ", 16383 + exponent, int(rate * 2 ** (63 - exponent)))  # 80-bit extended float
    comm = struct.pack(">hLh", channels, frames, 16) + rate80
    ssnd = struct.pack(">LL", 0, 0) + samples.astype(">i2").tobytes()
    body = b"AIFF" + b"COMM" + struct.pack(">L", len(comm)) + comm + b"SSND" + struct.pack(">L", len(ssnd)) + ssnd
    return b"FORM" + struct.pack(">L", len(body)) + body


def channel_ramp(channels: int, seconds: float = 0.5, rate: int = 16_000) -> np.ndarray:
    """int16 frames x channels where channel k holds the constant 100 * (k + 1): the mono
    average is known exactly."""
    frames = int(seconds * rate)
    return np.tile((100 * np.arange(1, channels + 1)).astype(np.int16), (frames, 1))


def mp3(layout: str, *, seconds: float = 1.0, rate: int = 16_000, **options: str) -> bytes:
    """A tone in MP3 (libmp3lame), mono or stereo."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3", options=options) as out:
        stream = out.add_stream("libmp3lame", rate=rate, layout=layout)
        n, channels = int(rate * seconds), 1 if layout == "mono" else 2
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.tile(tone, (channels, 1)), format="fltp", layout=layout)
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buffer.getvalue()


def channels_change_mp3() -> bytes:
    """A mono MP3 (ID3 tag, Xing frame) followed by bare stereo MP3 frames: the channel count
    changes mid-stream, as in files cut and joined by hand."""
    return mp3("mono") + mp3("stereo", write_xing="0", id3v2_version="0")


def flac_without_length(seconds: float, rate: int = 48_000) -> bytes:
    """Stereo silence in FLAC whose STREAMINFO declares no length: a few kB per minute that
    decode to megabytes, and nothing says how many before decoding."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout="stereo")
        block = np.zeros((1, rate * 10 * 2), dtype=np.int16)
        for _ in range(int(math.ceil(seconds / 10))):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="stereo")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = bytearray(buffer.getvalue())
    # STREAMINFO starts at byte 8; its bytes 10-17 end in the 36-bit total sample count.
    word = struct.unpack(">Q", data[18:26])[0] & ~((1 << 36) - 1)
    data[18:26] = struct.pack(">Q", word)
    return bytes(data)


def matroska_declaring(duration_ms: float) -> bytes:
    """0.32 s of FLAC in Matroska whose header declares `duration_ms` (negative, or absurd)."""
    from fractions import Fraction

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as out:
        stream = out.add_stream("flac", rate=16_000, layout="mono")
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16_000, i * 1024, Fraction(1, 16_000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    data = bytearray(buffer.getvalue())
    at = data.find(b"\x44\x89")  # the EBML Duration element: ID, size, then a float
    size = data[at + 2] & 0x7F
    data[at + 3 : at + 3 + size] = struct.pack(">d" if size == 8 else ">f", duration_ms)
    return bytes(data)
