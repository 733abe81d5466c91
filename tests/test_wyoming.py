"""Home Assistant's Wyoming protocol: a real harken server with `server.wyoming_port`, driven by the
wyoming package's own TCP client, on real audio (tests/data/jfk.flac) and the bundled models."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import numpy as np
import pytest
import soxr
from wyoming.asr import (
    Transcribe,
    Transcript,
    TranscriptChunk,
    TranscriptStart,
)
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeVoice

from harken import Settings
from harken.audio import load_audio
from harken.server import create_app
from tests.live_server import free_port, live_server

PHRASE = "ask not what your country"
CHUNK = 1600  # 100 ms at 16 kHz


@pytest.fixture(scope="module")
def jfk(data_dir) -> np.ndarray:
    return load_audio(data_dir / "jfk.flac").samples


@pytest.fixture(scope="module")
def wyoming(cache_dir):
    """(port, state) of a server that also speaks Wyoming."""
    port = free_port()
    settings = Settings.load(cache_dir=cache_dir, server={"wyoming_port": port})
    app = create_app(settings)
    with live_server(settings, app):
        yield port, app.state.harken


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


async def read_until(client: AsyncTcpClient, *types: str, timeout: float = 60.0) -> list[Event]:
    """Events up to and including the first of `types`; the list ends early if the server closes."""
    events: list[Event] = []
    while True:
        event = await asyncio.wait_for(client.read_event(), timeout)
        if event is None:
            return events
        events.append(event)
        if event.type in types:
            return events


async def send_audio(client: AsyncTcpClient, data: bytes, rate: int = 16000, channels: int = 1,
                     chunk_s: float = 0.1, pace_s: float = 0.0) -> None:
    step = int(rate * chunk_s) * 2 * channels
    await client.write_event(AudioStart(rate=rate, width=2, channels=channels).event())
    for at in range(0, len(data), step):
        await client.write_event(AudioChunk(rate=rate, width=2, channels=channels, audio=data[at:at + step]).event())
        if pace_s:
            await asyncio.sleep(pace_s)
    await client.write_event(AudioStop().event())


def check_transcription(events: list[Event]) -> tuple[str, list[str]]:
    """The final text and the chunks, after checking the event order."""
    types = [e.type for e in events]
    assert types[0] == TranscriptStart().event().type, types
    assert types[-2:] == ["transcript-stop", "transcript"], types
    assert set(types[1:-2]) <= {"transcript-chunk"}, types
    chunks = [TranscriptChunk.from_event(e).text for e in events if TranscriptChunk.is_type(e.type)]
    final = Transcript.from_event(events[-1])
    joined = "".join(chunks)
    if final.text.startswith(joined):  # the chunks continued each other up to the final: they are it
        assert joined == final.text, (chunks, final.text)
    return final.text, chunks


def test_describe_lists_installed_models_and_voices(wyoming):
    port, _ = wyoming

    async def main():
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Describe().event())
            return await read_until(client, "info")

    events = asyncio.run(main())
    info = Info.from_event(events[-1])
    assert [p.name for p in info.asr] == ["harken"] and [p.name for p in info.tts] == ["harken"]
    asr, tts = info.asr[0], info.tts[0]
    assert asr.installed and asr.version and asr.attribution.name == "harken"
    assert asr.attribution.url == "https://github.com/harken" and asr.supports_transcript_streaming
    models = {m.name: m for m in asr.models}
    assert models["whisper-tiny.en"].languages == ["en"] and models["whisper-tiny.en"].installed
    if "whisper-base" in models:  # multilingual
        assert {"en", "de", "fr", "ja"} <= set(models["whisper-base"].languages)
    assert all(not name.startswith("piper") for name in models)
    voices = {v.name: v for v in tts.voices}
    assert "piper-joe" in voices and voices["piper-joe"].installed and voices["piper-joe"].languages == ["en_US"]


def test_transcribe_streams_jfk(wyoming, jfk):
    port, state = wyoming

    async def main():
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Transcribe(name="whisper-tiny.en", language="en").event())
            # 100 ms chunks at 5x real time: partials have audio to settle on while it arrives.
            sender = asyncio.ensure_future(send_audio(client, pcm16(jfk), pace_s=0.02))
            events = await read_until(client, "transcript")
            await sender
            return events

    text, _ = check_transcription(asyncio.run(main()))
    assert PHRASE in text.lower()
    deadline = time.monotonic() + 5
    while state.live_streams and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state.live_streams == 0


def test_transcribe_without_request_stereo_32k_and_whisper_1(wyoming, jfk):
    """Audio without a transcribe goes to the default model; stereo at another rate is converted;
    a second utterance on the same connection (named whisper-1) is transcribed again."""
    port, _ = wyoming
    stereo = np.repeat(soxr.resample(jfk, 16000, 32000)[:, None], 2, axis=1).reshape(-1)

    async def main():
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await send_audio(client, pcm16(stereo), rate=32000, channels=2)
            first = await read_until(client, "transcript")
            await client.write_event(Transcribe(name="whisper-1").event())
            await send_audio(client, pcm16(jfk[: 16000 * 4]))
            second = await read_until(client, "transcript")
            return first, second

    first, second = asyncio.run(main())
    assert PHRASE in check_transcription(first)[0].lower()
    assert "americans" in check_transcription(second)[0].lower()


def test_synthesize_streams_pcm(wyoming):
    port, _ = wyoming

    async def main():
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Synthesize(text="Hello there. How are you?", voice=SynthesizeVoice(name="piper-joe")).event())
            return await read_until(client, "audio-stop")

    events = asyncio.run(main())
    assert events[0].type == "audio-start" and events[-1].type == "audio-stop"
    start = AudioStart.from_event(events[0])
    assert (start.width, start.channels) == (2, 1) and 8000 <= start.rate <= 48000
    chunks = [AudioChunk.from_event(e) for e in events[1:-1]]
    assert len(chunks) >= 2 and all(e.type == "audio-chunk" for e in events[1:-1])
    assert all((c.rate, c.width, c.channels) == (start.rate, 2, 1) for c in chunks)
    samples = np.frombuffer(b"".join(c.audio for c in chunks), "<i2")
    assert 0.5 < len(samples) / start.rate < 10
    assert np.abs(samples).max() > 1000  # speech, not silence


def test_errors_keep_the_connection(wyoming, jfk):
    port, _ = wyoming

    async def main():
        out = {}
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Synthesize(text="").event())
            out["empty"] = await read_until(client, "error", "audio-stop")
            await client.write_event(Synthesize(text="Hi.", voice=SynthesizeVoice(name="no-such-voice")).event())
            out["voice"] = await read_until(client, "error", "audio-stop")
            await client.write_event(Transcribe(name="no-such-model").event())
            out["model"] = await read_until(client, "error")
            await client.write_event(Transcribe(name="piper-joe").event())
            out["voice_model"] = await read_until(client, "error")
            await client.write_event(Event("audio-chunk", {"rate": "fast"}, b"\x00\x00"))
            out["chunk"] = await read_until(client, "error")
            await client.write_event(AudioStart(rate=16000, width=1, channels=1).event())
            out["width"] = await read_until(client, "error")
            await client.write_event(AudioChunk(rate=16000, width=1, channels=1, audio=b"\x80" * 1600).event())
            await client.write_event(AudioStop().event())
            await client.write_event(Event("no-such-event", {"x": 1}))
            await client.write_event(Describe().event())
            out["describe"] = await read_until(client, "info")
            await send_audio(client, pcm16(jfk[: 16000 * 4]))
            out["after"] = await read_until(client, "transcript")
        return out

    out = asyncio.run(main())
    for name in ("empty", "voice", "model", "voice_model", "chunk", "width"):
        events = out[name]
        assert [e.type for e in events] == ["error"], (name, events)
        assert Error.from_event(events[0]).text
    assert "empty" in Error.from_event(out["empty"][0]).text
    assert "no-such-voice" in Error.from_event(out["voice"][0]).text
    assert "width" in Error.from_event(out["width"][0]).text
    assert [e.type for e in out["describe"]] == ["info"]  # the refused utterance sent nothing
    assert "americans" in check_transcription(out["after"])[0].lower()


def test_broken_framing_closes_only_that_client(wyoming):
    port, _ = wyoming

    async def main():
        async with AsyncTcpClient("127.0.0.1", port) as good:
            bad_reader, bad_writer = await asyncio.open_connection("127.0.0.1", port)
            bad_writer.write(json.dumps({"type": "audio-chunk", "payload_length": 1 << 40}).encode() + b"\n")
            await bad_writer.drain()
            bad = await asyncio.wait_for(bad_reader.read(), 10)
            bad_writer.close()
            await good.write_event(Describe().event())
            return bad, await read_until(good, "info")

    bad, info = asyncio.run(main())
    assert b'"error"' in bad and b"payload_length" in bad
    assert info[-1].type == "info"


def test_limits_busy_disconnect_and_cap(cache_dir, jfk):
    port = free_port()
    settings = Settings.load(cache_dir=cache_dir, max_audio_s=3.0,
                             server={"wyoming_port": port, "live_streams": 1, "live_idle_s": 2.0})
    app = create_app(settings)
    state = app.state.harken

    def live_threads() -> int:
        return sum(t.name == "harken-live" for t in threading.enumerate())

    async def wait_free(timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while (state.live_streams or live_threads()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def main():
        out = {}
        async with AsyncTcpClient("127.0.0.1", port) as first:
            await first.write_event(Describe().event())
            await read_until(first, "info")
            async with AsyncTcpClient("127.0.0.1", port) as second:
                out["busy"] = await read_until(second, "error", timeout=10)
                out["busy_closed"] = await asyncio.wait_for(second.read_event(), 10)
            # A client that leaves mid-utterance frees its stream and its live session.
            await first.write_event(Transcribe().event())
            await first.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            await first.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=pcm16(jfk[:16000])).event())
            await read_until(first, "transcript-start")
            out["threads_open"] = live_threads()
        await wait_free()
        out["after_leave"] = (state.live_streams, live_threads())
        async with AsyncTcpClient("127.0.0.1", port) as third:  # the slot is free again
            await send_audio(third, pcm16(jfk))  # 11 s: over the 3 s cap
            out["cap"] = await read_until(third, "error", timeout=30)
            await send_audio(third, pcm16(jfk[: 16000 * 2]))  # the connection goes on
            out["after_cap_text"] = await read_until(third, "transcript", timeout=30)
        await wait_free()
        out["after_cap"] = (state.live_streams, live_threads())
        async with AsyncTcpClient("127.0.0.1", port) as idle:  # sends nothing: sent away
            out["idle"] = await read_until(idle, "error", timeout=10)
            out["idle_closed"] = await asyncio.wait_for(idle.read_event(), 10)
        return out

    with live_server(settings, app):
        out = asyncio.run(main())
    assert [e.type for e in out["busy"]] == ["error"] and "live streams" in Error.from_event(out["busy"][0]).text
    assert out["busy_closed"] is None
    assert out["threads_open"] >= 1 and out["after_leave"] == (0, 0)
    assert [e.type for e in out["cap"]] == ["transcript-start", "error"]
    assert Error.from_event(out["cap"][-1]).code == "audio_too_long"
    # The capped utterance's audio-stop sent nothing: the next events are the next utterance's.
    assert "fellow" in check_transcription(out["after_cap_text"])[0].lower()
    assert out["after_cap"] == (0, 0)
    assert [Error.from_event(e).code for e in out["idle"]] == ["idle"] and out["idle_closed"] is None
