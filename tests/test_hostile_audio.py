"""Hostile audio: inputs that once crashed, hung or exhausted the decoder, and the child-process
isolation that makes any future one cost a single file."""

from __future__ import annotations

import os
import signal
import threading
import time

import av
import io
import numpy as np
import pytest

from harken.audio import RawAudio, load_audio, read_audio
from harken.audio.isolation import InlineDecoder, ProcessDecoder, _HOST
from harken.errors import AudioDecodeError, AudioNotFoundError, AudioTooLongError, DecodeLimitError
from tests import hostile


@pytest.mark.parametrize("container", ["wav", "aiff"])
@pytest.mark.parametrize("channels", [8, 16, 31, 64])
def test_many_channels_downmix_without_crashing(container, channels):
    frames = hostile.channel_ramp(channels)
    data = hostile.wav(frames) if container == "wav" else hostile.aiff(frames)
    audio = load_audio(data, name=f"many.{container}")
    assert audio.source_channels == channels and audio.duration == pytest.approx(0.5, abs=0.01)
    # Channel k holds 100 (k + 1): the mono average is 50 (channels + 1), in int16 full scale.
    np.testing.assert_allclose(audio.samples, 50 * (channels + 1) / 32768, rtol=1e-4)


def test_a_codec_without_decoder_is_a_decode_error():
    data = hostile.wav(np.zeros((0, 1), np.int16), tag=0x7777)  # the 44-byte WAV the fuzzer found
    assert len(data) == 44
    with pytest.raises(AudioDecodeError, match="no decoder"):
        load_audio(data, name="odd.wav")


def test_channel_count_changing_mid_stream_decodes_both_parts():
    audio = load_audio(hostile.channels_change_mp3(), name="joined.mp3")
    assert audio.source_channels == 1 and audio.duration == pytest.approx(2.0, abs=0.15)
    assert np.abs(audio.samples[-8000:]).max() > 0.1  # the stereo half is there, not dropped


def test_nan_and_infinite_samples_are_silenced():
    x = np.full((16_000, 1), 0.25, np.float32)
    x[4000:6000] = np.nan
    x[8000:8100] = np.inf
    x[9000:9100] = -np.inf
    audio = load_audio(hostile.wav(x), name="nan.wav")
    assert np.isfinite(audio.samples).all()
    assert audio.samples[:3000].mean() == pytest.approx(0.25, abs=1e-3)
    assert np.abs(audio.samples[4300:5700]).max() < 1e-3


def test_audio_of_nothing_but_nan_is_refused():
    with pytest.raises(AudioDecodeError, match="NaN"):
        load_audio(hostile.wav(np.full((8000, 2), np.nan, np.float32)), name="nan.wav")


def test_float_samples_beyond_full_scale_are_clipped_like_16_bit_pcm():
    x = np.full((8000, 1), 1e30, np.float32)
    x[4000:] = -3.0
    audio = load_audio(hostile.wav(x))
    assert audio.samples.max() == 1.0 and audio.samples.min() == -1.0


def test_float_samples_near_float_max_do_not_overflow_into_nan():
    x = np.full((2000, 1), 3e38, np.float32)  # the fuzzer's find: soxr overflowed to NaN at 22.05 kHz
    x[1::2] = -3e38
    audio = load_audio(hostile.wav(x, rate=22_050))
    assert np.isfinite(audio.samples).all() and np.abs(audio.samples).max() <= 1.0


@pytest.mark.parametrize("declared_ms", [-1e9, 1e15, float("nan")])
def test_an_absurd_declared_length_is_ignored(declared_ms):
    audio = load_audio(hostile.matroska_declaring(declared_ms), name="odd.mka")  # no limit: the declaration alone
    assert audio.duration == pytest.approx(0.32, abs=0.01)


def test_a_file_that_declares_no_length_is_stopped_at_the_limit():
    data = hostile.flac_without_length(600)
    with av.open(io.BytesIO(data)) as container:  # nothing tells the length before decoding
        assert container.streams.audio[0].duration is None and container.duration is None
    start = time.perf_counter()
    with pytest.raises(AudioTooLongError, match="longer than the 20 s limit"):
        load_audio(data, max_duration=20, name="bomb.flac")
    # Stopped near 20 s of audio, not after decoding all ten minutes.
    assert time.perf_counter() - start < 0.5 * _decode_seconds(data)


def _decode_seconds(data: bytes) -> float:
    start = time.perf_counter()
    load_audio(data)
    return time.perf_counter() - start


def test_only_regular_files_are_read(tmp_path):
    fifo = tmp_path / "clip.wav"
    os.mkfifo(fifo)
    with pytest.raises(AudioNotFoundError, match="not a regular file"):
        load_audio(fifo)  # returns at once: a FIFO is never opened for a blocking read
    with pytest.raises(AudioNotFoundError, match="no such file"):
        load_audio(str(tmp_path / "a\0b.wav"))


# --- isolation -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decoder() -> ProcessDecoder:
    return ProcessDecoder(concurrency=2, timeout_s=60)


def test_a_child_process_decodes_exactly_what_inline_decoding_does(decoder, data_dir):
    raw = read_audio(data_dir / "jfk.flac")
    isolated, inline = decoder.decode(raw, max_duration=60), InlineDecoder().decode(raw, max_duration=60)
    np.testing.assert_array_equal(isolated.samples, inline.samples)
    assert (isolated.sha256, isolated.source_rate, isolated.source_channels, isolated.source_format) == (
        inline.sha256, inline.source_rate, inline.source_channels, inline.source_format)
    with pytest.raises(AudioTooLongError, match="longer than the 5 s limit"):  # errors come back typed
        decoder.decode(raw, max_duration=5)


def test_a_decoder_crash_costs_one_file(decoder, data_dir):
    bomb = RawAudio(hostile.flac_without_length(1200), "bomb", "bomb.flac")
    outcome: list[BaseException] = []

    def decode() -> None:
        try:
            decoder.decode(bomb)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    worker = threading.Thread(target=decode)
    worker.start()
    child = _wait_for_child()
    os.kill(child, signal.SIGSEGV)  # what a bug in FFmpeg does to the process decoding
    worker.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], AudioDecodeError)
    assert "crashed" in outcome[0].message
    assert decoder.decode(read_audio(data_dir / "jfk.flac")).duration == pytest.approx(11.0, abs=0.01)


def test_a_decode_past_its_deadline_is_stopped(data_dir):
    quick = ProcessDecoder(concurrency=1, timeout_s=0.3)
    with pytest.raises(DecodeLimitError, match="longer than 0.3 s"):
        quick.decode(RawAudio(hostile.flac_without_length(1200), "bomb", "bomb.flac"))
    assert quick.decode(read_audio(data_dir / "61-70968-0000.flac")).duration > 4


def _wait_for_child() -> int:
    host = _HOST.control() and _HOST._proc.pid
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            children = open(f"/proc/{host}/task/{host}/children").read().split()
        except OSError:
            pytest.skip("needs Linux's /proc to find the decoding child")
        if children:
            return int(children[0])
        time.sleep(0.01)
    raise AssertionError("no decoding child appeared")
