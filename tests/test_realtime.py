"""OpenAI Realtime transcription over /v1/realtime, driven by the official openai client's realtime API."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import numpy as np
import openai
import pytest
import soxr
import websockets

from harken import Settings
from harken.audio import load_audio
from harken.audio.pcm import _G711
from tests.live_server import live_server
from tests.wer import wer

JFK = "And so my fellow Americans ask not what your country can do for you, ask what you can do for your country."
GA_FORMAT = {"type": "audio/pcm", "rate": 24000}


@pytest.fixture(scope="module")
def server(cache_dir):
    settings = Settings.load(cache_dir=cache_dir, server={"live_idle_s": 3.0, "live_streams": 3})
    with live_server(settings) as url:
        yield url


def pcm24(samples: np.ndarray, silence_s: float = 1.5) -> bytes:
    padded = np.concatenate([samples, np.zeros(int(silence_s * 16000), np.float32)])
    return (np.clip(soxr.resample(padded, 16000, 24000), -1, 1) * 32767).astype("<i2").tobytes()


def mulaw8(samples: np.ndarray) -> bytes:
    """G.711 mu-law at 8 kHz: each sample as the code whose expansion is nearest."""
    table = _G711["pcmu"]
    order = np.argsort(table)
    x = soxr.resample(samples, 16000, 8000)
    at = np.clip(np.searchsorted(table[order], x), 1, 255)
    nearer = np.where(np.abs(table[order][at - 1] - x) < np.abs(table[order][at] - x), at - 1, at)
    return order[nearer].astype(np.uint8).tobytes()


def connect(url: str, **kwargs):
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=kwargs.pop("api_key", "unused"), max_retries=0)
    return client.realtime.connect(extra_query={"intent": "transcription"}, **kwargs)


async def send_audio(conn, data: bytes, chunk: int, pace_s: float = 0.0) -> None:
    for i in range(0, len(data), chunk):
        await conn.input_audio_buffer.append(audio=base64.b64encode(data[i : i + chunk]).decode())
        if pace_s:
            await asyncio.sleep(pace_s)


async def collect(conn, until: str, count: int = 1, timeout: float = 120.0, done=None) -> list:
    """(time, event) pairs up to the `count`-th event of type `until`, or until `done(events)`."""
    events, seen = [], 0
    async def read():
        nonlocal seen
        async for event in conn:
            events.append((time.perf_counter(), event))
            if done is not None and done([e for _, e in events]):
                return
            if done is None and event.type == until:
                seen += 1
                if seen == count:
                    return
    await asyncio.wait_for(read(), timeout)
    return events


def all_transcribed(end_ms: int):
    """Every committed item completed, and speech stopped near the end of the audio."""
    def done(events) -> bool:
        stops = [e for e in events if e.type == "input_audio_buffer.speech_stopped"]
        completed = {e.item_id for e in events if e.type.endswith("transcription.completed")}
        return bool(stops) and stops[-1].audio_end_ms >= end_ms and all(e.item_id in completed for e in stops)
    return done


def test_server_vad_turns_and_transcripts(server, service, data_dir):
    """Two utterances with a pause between: two items, each started, stopped, committed and completed."""
    jfk = load_audio(data_dir / "jfk.flac").samples
    lj = load_audio(data_dir / "LJ001-0001.flac").samples
    audio = pcm24(jfk) + pcm24(lj)

    async def main():
        async with connect(server) as conn:
            created = await conn.recv()
            assert created.type == "session.created" and created.session.type == "transcription"
            await conn.session.update(session={"type": "transcription", "audio": {"input": {
                "format": GA_FORMAT, "transcription": {"model": "whisper-1", "language": "en"},
                "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                   "silence_duration_ms": 700}}}})
            updated = await conn.recv()
            assert updated.type == "session.updated"
            assert updated.session.audio.input.turn_detection.silence_duration_ms == 700
            sender = asyncio.ensure_future(send_audio(conn, audio, 24000 * 2 // 10))  # 100 ms chunks, fast
            end_ms = int((len(jfk) + len(lj)) / 16 + 1500)  # the last speech ends within the last silence
            events = await collect(conn, "", done=all_transcribed(end_ms))
            await sender
            return [e for _, e in events]

    events = asyncio.run(main())
    kinds = [e.type for e in events]
    assert kinds.count("input_audio_buffer.speech_started") >= 2  # at least one per recording
    completed = [e for e in events if e.type.endswith("transcription.completed")]
    items = [e.item_id for e in events if e.type == "input_audio_buffer.committed"]
    assert [c.item_id for c in completed] == items
    text = " ".join(c.transcript for c in completed)
    offline = " ".join(service.transcribe(data_dir / f).text for f in ("jfk.flac", "LJ001-0001.flac"))
    assert wer([offline], [text]) <= 0.1, (offline, text)
    assert all(c.usage.type == "duration" and c.usage.seconds > 1 for c in completed)
    # Every item's events come in protocol order.
    first = items[0]
    order = [e.type for e in events if getattr(e, "item_id", None) == first]
    assert order.index("input_audio_buffer.speech_started") < order.index("input_audio_buffer.committed") \
        < order.index("conversation.item.input_audio_transcription.completed")


def test_manual_commit_partials_append_and_final_matches_offline(server, service, data_dir):
    """No turn detection: audio at real-time pace gets partial deltas before the commit; the final
    transcript is one decode of the whole item, the same as offline transcription."""
    samples = load_audio(data_dir / "LJ001-0001.flac").samples
    audio = pcm24(samples, silence_s=0.0)

    async def main():
        async with connect(server) as conn:
            await conn.recv()
            await conn.session.update(session={"type": "transcription", "audio": {"input": {
                "format": GA_FORMAT, "turn_detection": None}}})
            await conn.recv()
            start = time.perf_counter()
            reader = asyncio.ensure_future(collect(conn, "conversation.item.input_audio_transcription.completed"))
            await send_audio(conn, audio, 24000 * 2 // 10, pace_s=0.1)
            sent = time.perf_counter()
            await conn.input_audio_buffer.commit()
            return start, sent, await reader

    start, sent, events = asyncio.run(main())
    deltas = [(t, e) for t, e in events if e.type.endswith("transcription.delta")]
    completed = events[-1][1]
    assert deltas and deltas[0][0] < sent, "no partial text while the audio was still arriving"
    assert completed.transcript == service.transcribe(data_dir / "LJ001-0001.flac", use_cache=False).text
    told = "".join(e.delta for _, e in deltas)
    assert not told.startswith(" ") and "  " not in told  # deltas join with single spaces
    # The partial words agree with the final transcript, which the last delta completes.
    assert wer([completed.transcript], [told]) <= 0.2, (told, completed.transcript)


def test_beta_dialect_with_mulaw(server, data_dir):
    jfk = load_audio(data_dir / "jfk.flac").samples
    audio = mulaw8(np.concatenate([jfk, np.zeros(16000, np.float32)]))

    async def main():
        async with connect(server) as conn:
            await conn.recv()
            await conn.send({"type": "transcription_session.update", "session": {
                "input_audio_format": "g711_ulaw",
                "input_audio_transcription": {"model": "whisper-tiny.en", "language": "en"},
                "turn_detection": None}})
            updated = await conn.recv_bytes()
            await send_audio(conn, audio, 800)
            await conn.input_audio_buffer.commit()
            events = await collect(conn, "conversation.item.input_audio_transcription.completed")
            return json.loads(updated), events[-1][1]

    updated, completed = asyncio.run(main())
    assert updated["type"] == "transcription_session.updated"
    assert updated["session"]["input_audio_format"] == "g711_ulaw"
    assert wer([JFK], [completed.transcript]) <= 0.15, completed.transcript


def test_bad_events_get_errors_and_the_session_goes_on(server, data_dir):
    async def main():
        async with connect(server) as conn:
            await conn.recv()
            errors = []
            for event in ("not json", json.dumps({"type": "response.create"}), json.dumps([1, 2]),
                          json.dumps({"type": "input_audio_buffer.append", "audio": "%%% not base64"}),
                          json.dumps({"type": "session.update", "session": {"type": "realtime"}}),
                          json.dumps({"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/flac"}}}}}),
                          json.dumps({"type": "session.update", "session": {"audio": {"input": {"transcription": {"model": "nope"}}}}}),
                          json.dumps({"type": "session.update", "session": {"audio": {"input": {"turn_detection": {"threshold": 7}}}}}),
                          json.dumps({"type": "input_audio_buffer.commit"})):
                await conn.send_raw(event)
                errors.append(await conn.recv())
            # Audio, then a format change: refused, the format stays.
            await send_audio(conn, b"\0\0" * 2400, 4800)
            await conn.session.update(session={"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"}}}})
            errors.append(await conn.recv())
            # Still a working session: a real commit transcribes.
            jfk = load_audio(data_dir / "jfk.flac").samples
            await conn.session.update(session={"type": "transcription", "audio": {"input": {"turn_detection": None}}})
            assert (await conn.recv()).type == "session.updated"
            await send_audio(conn, pcm24(jfk, 0.0), 48000)
            await conn.input_audio_buffer.commit()
            events = await collect(conn, "conversation.item.input_audio_transcription.completed")
            return errors, events[-1][1]

    errors, completed = asyncio.run(main())
    assert all(e.type == "error" for e in errors), [e.type for e in errors]
    codes = [e.error.code for e in errors]
    assert codes[-2] == "input_audio_buffer_commit_empty"
    assert "model_not_found" in codes or any("nope" in e.error.message for e in errors)
    assert "format cannot change" in errors[-1].error.message
    assert all(isinstance(e.error.message, str) and e.error.type for e in errors)
    assert "country" in completed.transcript.lower()


def test_sockets_closed_with_a_reason(server):
    async def main():
        out = {}
        # No intent=transcription: a conversation session, which harken does not serve.
        async with websockets.connect(server.replace("http", "ws") + "/v1/realtime") as ws:
            out["intent"] = (json.loads(await ws.recv()), await _closed(ws))
        async with websockets.connect(server.replace("http", "ws") + "/v1/realtime?intent=transcription") as ws:
            await ws.recv()  # session.created
            await ws.send(b"\x00\x01")
            out["binary"] = await _closed(ws)
        async with websockets.connect(server.replace("http", "ws") + "/v1/realtime?intent=transcription") as ws:
            await ws.recv()
            out["idle"] = await _closed(ws, timeout=10)  # live_idle_s is 3 s here
        # More streams than allowed (3): the fourth is told so and closed; the others carry on.
        url = server.replace("http", "ws") + "/v1/realtime?intent=transcription"
        held = [await websockets.connect(url) for _ in range(3)]
        for ws in held:
            await ws.recv()
        async with websockets.connect(url) as ws:
            out["full"] = (json.loads(await ws.recv()), await _closed(ws))
        await held[0].send(json.dumps({"type": "input_audio_buffer.clear"}))
        out["still"] = json.loads(await held[0].recv())
        for ws in held:
            await ws.close()
        return out

    out = asyncio.run(main())
    assert out["intent"][0]["type"] == "error" and out["intent"][1][0] == 1008
    assert "intent=transcription" in out["intent"][1][1]
    assert out["binary"][0] == 1008 and "JSON text" in out["binary"][1]
    assert out["idle"][0] == 1008 and "idle" in out["idle"][1]
    assert out["full"][1][0] == 1013 and "retry" in out["full"][0]["error"]["message"]
    assert out["still"]["type"] == "input_audio_buffer.cleared"


async def _closed(ws, timeout: float = 5.0) -> tuple[int, str]:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code, closed.rcvd.reason


def test_api_keys_apply_to_the_socket(cache_dir, tmp_path, data_dir):
    keys = tmp_path / "keys.txt"
    keys.write_text("sk-live-test\n")
    with live_server(Settings.load(cache_dir=cache_dir, api_keys_file=keys)) as url:
        async def main():
            with pytest.raises(Exception) as refused:
                async with connect(url, api_key="wrong") as conn:
                    await conn.recv()
            async with connect(url, api_key="sk-live-test") as conn:
                return refused.value, (await conn.recv()).type

        refused, first = asyncio.run(main())
    assert "401" in str(refused) or "rejected" in str(refused).lower()
    assert first == "session.created"
