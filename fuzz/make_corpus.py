"""Write a seed corpus of small, valid audio files for fuzz/decode_fuzz.py.

Each file is encoded by PyAV from a short synthetic tone; codecs or containers the local FFmpeg
build lacks are skipped. Usage: python fuzz/make_corpus.py [OUT_DIR]   (default fuzz/corpus/)
"""

from __future__ import annotations

import io
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

MAX_BYTES = 20_000

# name, container format, codec, sample format, channels, rate, seconds, codec options
SPECS = [
    ("s16_mono.wav", "wav", "pcm_s16le", "s16", 1, 16000, 0.25, {}),
    ("s16_stereo.wav", "wav", "pcm_s16le", "s16", 2, 8000, 0.25, {}),
    ("s16_8ch.wav", "wav", "pcm_s16le", "s16", 8, 8000, 0.05, {}),
    ("f32_mono.wav", "wav", "pcm_f32le", "flt", 1, 16000, 0.2, {}),
    ("f32_stereo.wav", "wav", "pcm_f32le", "flt", 2, 22050, 0.1, {}),
    ("f32_8ch.wav", "wav", "pcm_f32le", "flt", 8, 8000, 0.05, {}),
    ("s16be.aiff", "aiff", "pcm_s16be", "s16", 2, 11025, 0.2, {}),
    ("tone.flac", "flac", "flac", "s16", 1, 16000, 0.5, {}),
    ("stereo.flac", "flac", "flac", "s16", 2, 44100, 0.2, {}),
    ("tone.mp3", "mp3", "libmp3lame", "s16p", 1, 22050, 0.5, {"b": "32k"}),
    ("stereo.mp3", "mp3", "libmp3lame", "s16p", 2, 44100, 0.3, {"b": "64k"}),
    ("tone.opus", "ogg", "libopus", "s16", 1, 48000, 0.5, {"b": "24k"}),
    ("stereo.opus", "ogg", "libopus", "s16", 2, 48000, 0.3, {"b": "32k"}),
    ("tone.ogg", "ogg", "libvorbis", "fltp", 1, 22050, 0.5, {}),
    ("tone_native.ogg", "ogg", "vorbis", "fltp", 2, 22050, 0.5, {}),
    ("tone.m4a", "ipod", "aac", "fltp", 1, 16000, 0.5, {"b": "32k"}),
    ("stereo.m4a", "ipod", "aac", "fltp", 2, 44100, 0.3, {"b": "64k"}),
    ("tone.webm", "webm", "libopus", "s16", 1, 48000, 0.5, {"b": "24k"}),
    ("tone.mka", "matroska", "flac", "s16", 1, 16000, 0.3, {}),
]

LAYOUTS = {1: "mono", 2: "stereo", 8: "7.1"}


def tone(channels: int, rate: int, seconds: float) -> np.ndarray:
    """(channels, n) float32 in [-0.5, 0.5]: a different frequency per channel."""
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)]).astype(np.float32)


def to_format(x: np.ndarray, fmt: str) -> np.ndarray:
    if fmt.startswith("s16"):
        x = np.round(x * 32767).astype(np.int16)
    planar = fmt.endswith("p")
    return x if planar else x.T.reshape(1, -1)  # packed: one interleaved plane


def encode(container_fmt, codec, sample_fmt, channels, rate, seconds, options) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container_fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout=LAYOUTS[channels], options=options)
        stream.codec_context.format = sample_fmt
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}
        frame_size = stream.codec_context.frame_size or 1024
        samples = tone(channels, rate, seconds)
        pts = 0
        for start in range(0, samples.shape[1], frame_size):
            chunk = samples[:, start : start + frame_size]
            if chunk.shape[1] < frame_size and stream.codec_context.frame_size:
                chunk = np.pad(chunk, ((0, 0), (0, frame_size - chunk.shape[1])))
            frame = av.AudioFrame.from_ndarray(to_format(chunk, sample_fmt), format=sample_fmt, layout=LAYOUTS[channels])
            frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
            pts += chunk.shape[1]
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else Path(__file__).parent / "corpus"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, *spec in SPECS:
        try:
            data = encode(*spec)
        except Exception as exc:  # noqa: BLE001 - a codec or container this build lacks
            print(f"skip {name}: {type(exc).__name__}: {exc}")
            continue
        if len(data) > MAX_BYTES:
            print(f"skip {name}: {len(data)} bytes is over {MAX_BYTES}")
            continue
        (out_dir / name).write_bytes(data)
        written += 1
        print(f"wrote {name} ({len(data)} bytes)")
    print(f"{written} files in {out_dir}")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
