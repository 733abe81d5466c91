"""audio.load_audio: every container, every source kind, every kind of bad input."""

from __future__ import annotations

import base64
import hashlib
import io
import wave

import av
import numpy as np
import pytest

from harken.audio import SAMPLE_RATE, load_audio
from harken.errors import (
    AudioDecodeError,
    AudioNotFoundError,
    AudioTooLongError,
    EmptyAudioError,
    NoAudioStreamError,
)


def _encode(samples: np.ndarray, rate: int, container: str, codec: str, path) -> None:
    """Write stereo float samples with FFmpeg's own encoders through PyAV."""
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        fmt = stream.codec_context.codec.audio_formats[0].name
        resampler = av.AudioResampler(format=fmt, layout="stereo", rate=rate)
        step = 1024
        for i in range(0, samples.shape[1], step):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i : i + step]), format="fltp", layout="stereo")
            frame.sample_rate = rate
            for f in resampler.resample(frame):
                out.mux(stream.encode(f))
        for f in resampler.resample(None):
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))


@pytest.fixture(scope="module")
def jfk_stereo(data_dir) -> tuple[np.ndarray, int]:
    resampler = av.AudioResampler(format="fltp")
    with av.open(str(data_dir / "jfk.flac")) as c:
        frames = [out.to_ndarray() for f in c.decode(audio=0) for out in resampler.resample(f)]
        rate = c.streams.audio[0].rate
    raw = np.concatenate(frames, axis=1)
    return raw[:, : rate * 4], rate


@pytest.mark.parametrize(
    "container,codec,suffix",
    [
        ("wav", "pcm_s16le", "wav"),
        ("flac", "flac", "flac"),
        ("mp3", "libmp3lame", "mp3"),
        ("ipod", "aac", "m4a"),
        ("ogg", "libopus", "opus"),
        ("webm", "libopus", "webm"),
        ("aiff", "pcm_s16be", "aiff"),
    ],
)
def test_every_container_decodes_to_16k_mono(tmp_path, jfk_stereo, container, codec, suffix):
    samples, rate = jfk_stereo
    if codec == "libopus":
        rate = 48000
        samples = np.stack([np.interp(np.arange(0, samples.shape[1], 44100 / 48000), np.arange(samples.shape[1]), ch) for ch in samples]).astype(np.float32)
    path = tmp_path / f"clip.{suffix}"
    try:
        _encode(samples, rate, container, codec, path)
    except av.error.FFmpegError as exc:  # pragma: no cover - depends on the FFmpeg build
        pytest.skip(f"this FFmpeg build cannot encode {codec}: {exc}")
    audio = load_audio(path)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.source_rate == rate and audio.source_channels == 2
    assert abs(audio.duration - 4.0) < 0.1
    assert audio.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert np.abs(audio.samples).max() > 0.05  # real signal, not silence


def test_ogg_vorbis(data_dir):
    # PyAV's FFmpeg has no Vorbis encoder, so this container is covered by a real ESC-10 clip.
    audio = load_audio(data_dir / "dog_bark__1-100032-A.ogg")
    assert audio.source_format == "ogg/vorbis" and audio.source_rate == 44100
    assert abs(audio.duration - 5.0) < 0.05


def test_source_kinds_agree(data_dir):
    path = data_dir / "61-70968-0000.flac"
    data = path.read_bytes()
    url = "data:audio/flac;base64," + base64.b64encode(data).decode()
    loaded = [load_audio(path), load_audio(str(path)), load_audio(data), load_audio(io.BytesIO(data)), load_audio(url)]
    assert len({a.sha256 for a in loaded}) == 1
    for a in loaded[1:]:
        np.testing.assert_array_equal(a.samples, loaded[0].samples)
    assert loaded[0].source_rate == 16000 and abs(loaded[0].duration - 4.905) < 0.01


def test_resamples_and_downmixes(data_dir):
    audio = load_audio(data_dir / "jfk.flac")  # 44.1 kHz stereo, 24 bit
    assert audio.source_rate == 44100 and audio.source_channels == 2
    assert abs(len(audio.samples) - 11.0 * SAMPLE_RATE) < SAMPLE_RATE * 0.01


def _bad_files(tmp_path, data_dir):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "random.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "text.mp3").write_text("this is not audio\n")
    (tmp_path / "truncated.flac").write_bytes((data_dir / "jfk.flac").read_bytes()[:60000])
    with wave.open(str(tmp_path / "header_only.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
    return tmp_path


@pytest.mark.parametrize(
    "name,error",
    [
        ("missing.wav", AudioNotFoundError),
        ("empty.wav", EmptyAudioError),
        ("random.wav", (AudioDecodeError, NoAudioStreamError)),
        ("text.mp3", AudioDecodeError),
        ("truncated.flac", AudioDecodeError),
        ("header_only.wav", EmptyAudioError),
    ],
)
def test_bad_input_has_a_plain_typed_error(tmp_path, data_dir, name, error):
    folder = _bad_files(tmp_path, data_dir)
    with pytest.raises(error) as info:
        load_audio(folder / name)
    assert "\n" not in info.value.message and name in info.value.message


def test_video_without_audio_has_no_audio_stream(tmp_path):
    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 40, dtype=np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(NoAudioStreamError):
        load_audio(path)


def test_longer_than_the_limit(data_dir):
    with pytest.raises(AudioTooLongError, match="longer than the 5 s limit"):
        load_audio(data_dir / "jfk.flac", max_duration=5)


def test_bad_data_url():
    with pytest.raises(AudioDecodeError, match="base64"):
        load_audio("data:audio/wav,not-base64")
