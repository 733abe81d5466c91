"""Live transcription without a socket: the Python iterator API and `harken listen`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import wave

import numpy as np
import pytest

from harken.audio import load_audio
from harken.audio.pcm import PcmStream
from harken.live import Committed, Completed, LiveOptions, SpeechStarted, SpeechStopped, TextDelta, TurnDetection, listen
from tests.wer import wer


def chunks(samples: np.ndarray, size: int = 1600):
    return (samples[i : i + size] for i in range(0, len(samples), size))


def test_listen_yields_turns_in_order_and_finals(service, data_dir):
    jfk = load_audio(data_dir / "jfk.flac").samples
    lj = load_audio(data_dir / "LJ001-0001.flac").samples
    audio = np.concatenate([jfk, np.zeros(16000, np.float32), lj, np.zeros(16000, np.float32)])
    events = list(listen(service, chunks(audio), LiveOptions(language="en", turn_detection=TurnDetection(silence_duration_ms=700))))
    started = [e for e in events if isinstance(e, SpeechStarted)]
    stopped = [e for e in events if isinstance(e, SpeechStopped)]
    completed = [e for e in events if isinstance(e, Completed)]
    assert len(started) == len(stopped) == len(completed) >= 2
    assert all(a.audio_start_ms < b.audio_end_ms for a, b in zip(started, stopped))
    assert [e.item for e in started] == [e.item for e in completed]
    text = " ".join(c.transcript.text for c in completed)
    offline = " ".join(service.transcribe(data_dir / f).text for f in ("jfk.flac", "LJ001-0001.flac"))
    assert wer([offline], [text]) <= 0.1, (offline, text)
    # Each item's deltas hold the final's words (the final completes them).
    for c in completed:
        told = "".join(e.delta for e in events if isinstance(e, TextDelta) and e.item == c.item)
        assert wer([c.transcript.text], [told]) <= 0.2


def test_listen_without_turn_detection_commits_at_the_end(service, data_dir):
    samples = load_audio(data_dir / "jfk.flac").samples
    events = list(listen(service, chunks(samples), LiveOptions(turn_detection=None, partials=False)))
    assert [type(e) for e in events] == [Committed, TextDelta, Completed]
    assert events[-1].transcript.text == service.transcribe(data_dir / "jfk.flac", use_cache=False).text


def test_silence_and_noise_make_no_items(service):
    rng = np.random.default_rng(0)
    quiet = np.concatenate([np.zeros(32000, np.float32), rng.normal(0, 0.002, 32000).astype(np.float32)])
    assert list(listen(service, chunks(quiet))) == []


def test_pcm_stream_does_not_depend_on_how_bytes_are_cut(data_dir):
    samples = load_audio(data_dir / "jfk.flac").samples[:48000]
    data = (samples * 32767).astype("<i2").tobytes()
    whole = PcmStream("pcm16", 16000).feed(data)
    cut = PcmStream("pcm16", 16000)
    parts = np.concatenate([cut.feed(data[i : i + 333]) for i in range(0, len(data), 333)])
    np.testing.assert_array_equal(whole, parts)
    resampled = PcmStream("pcm16", 24000)
    out = np.concatenate([resampled.feed(data[i : i + 1001]) for i in range(0, len(data), 1001)] + [resampled.flush()])
    assert abs(len(out) - 48000 * 16000 / 24000) <= 1


def _listen(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harken", "listen", *args], input=stdin, capture_output=True, timeout=300)


def test_cli_listen_file_jsonl(data_dir):
    done = _listen(str(data_dir / "LJ001-0001.flac"), "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert events[0]["type"] == "speech_started" and events[-1]["type"] == "completed"
    assert "printing" in events[-1]["text"].lower()


def test_cli_listen_stdin_wav_and_raw_pcm(data_dir):
    samples = load_audio(data_dir / "jfk.flac").samples
    stereo = np.repeat((samples * 32767).astype("<i2")[:, None], 2, axis=1)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:  # 16-bit stereo WAV, as arecord writes it
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(stereo.tobytes())
    from_wav = _listen("-", stdin=buffer.getvalue())
    from_raw = _listen("-", "--rate", "16000", stdin=(samples * 32767).astype("<i2").tobytes())
    for done in (from_wav, from_raw):
        assert done.returncode == 0, done.stderr
        assert "country" in done.stdout.decode().lower()
    # Piped: final lines only. The stereo mix-down rounds samples, so the two may differ a little.
    assert wer([from_raw.stdout.decode()], [from_wav.stdout.decode()]) <= 0.1


@pytest.mark.parametrize("args, message", [
    (["missing.wav"], "no such file"),
    (["-", "--format", "xml"], "--format must be text or jsonl"),
    (["-", "--model", "nope"], "nope"),
])
def test_cli_listen_bad_input_one_line(args, message):
    done = _listen(*args, stdin=b"")
    err = done.stderr.decode()
    assert done.returncode != 0 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
