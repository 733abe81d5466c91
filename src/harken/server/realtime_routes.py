"""OpenAI Realtime transcription sessions over a WebSocket: `GET /v1/realtime?intent=transcription`.

The GA protocol (`session.update` with `session.type = "transcription"` and `session.audio.input`)
and the beta one (`transcription_session.update` with `input_audio_format`, ...) both work; the
server answers in the dialect the client last spoke. The work itself is a live.LiveSession.
Every problem with a client event is an `error` event in OpenAI's shape, and the session goes
on; only a socket that breaks the protocol's frame (binary frames), idles, or finds the
server full is closed, with a reason.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from dataclasses import asdict, dataclass, replace
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from harken.audio.pcm import Encoding, PcmStream
from harken.errors import HarkenError, InvalidOptionError, LiveSessionError
from harken.live import (
    Committed, Completed, Failed, LiveEvent, LiveOptions, LiveSession, SpeechStarted, SpeechStopped, TextDelta,
    TurnDetection,
)
from harken.server.errors import envelope
from harken.server.state import ServerState

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["OpenAI"])

# GA format objects and beta format names, as (encoding, rate).
_GA_FORMATS = {"audio/pcm": "pcm16", "audio/pcmu": "pcmu", "audio/pcma": "pcma"}
_BETA_FORMATS = {"pcm16": ("pcm16", 24_000), "g711_ulaw": ("pcmu", 8_000), "g711_alaw": ("pcma", 8_000)}
_CLOSE_POLICY, _CLOSE_ERROR, _CLOSE_BUSY = 1008, 1011, 1013


@dataclass(frozen=True)
class _Config:
    live: LiveOptions
    encoding: Encoding = "pcm16"
    rate: int = 24_000
    noise_reduction: Any = None


@router.websocket("/realtime")
async def realtime(websocket: WebSocket) -> None:
    state: ServerState = websocket.app.state.harken
    await websocket.accept()
    if websocket.query_params.get("intent") != "transcription":
        await _close(websocket, _CLOSE_POLICY, "harken serves transcription sessions: connect with ?intent=transcription")
        return
    if state.live_streams >= state.settings.server.live_streams:
        await _close(websocket, _CLOSE_BUSY, f"the server already has {state.live_streams} live streams open; retry later")
        return
    state.live_streams += 1
    try:
        await _Connection(websocket, state).run()
    finally:
        state.live_streams -= 1


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    await websocket.send_text(json.dumps(_error_event(InvalidOptionError(reason))))
    await websocket.close(code, reason[:120])  # a close reason is at most 123 bytes


class _Connection:
    def __init__(self, websocket: WebSocket, state: ServerState) -> None:
        self.ws, self.state = websocket, state
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[LiveEvent] = asyncio.Queue()
        self.dialect = "ga"
        self.id = "sess_" + uuid.uuid4().hex[:20]
        self.config = _Config(LiveOptions(model=state.settings.default_model))
        self.session: LiveSession | None = None
        self.pcm: PcmStream | None = None
        self.appended = False  # audio since the last (re)start: the format may no longer change

    async def run(self) -> None:
        sender = asyncio.ensure_future(self._send_events())
        try:
            await self._start()
            await self._send({"type": "session.created", "session": self._session_object()})
            await self._receive()
        finally:
            sender.cancel()
            if self.session is not None:  # a client gone mid-utterance: its work is dropped
                await asyncio.to_thread(self.session.close, finish=False)

    async def _start(self) -> None:
        """(Re)start the live session for the current configuration."""
        if self.session is not None:
            await asyncio.to_thread(self.session.close, finish=False)
        emit = lambda event: self.loop.call_soon_threadsafe(self.events.put_nowait, event)  # noqa: E731
        self.session = await asyncio.to_thread(LiveSession, self.state.service, self.config.live, emit)
        self.pcm = PcmStream(self.config.encoding, self.config.rate)
        self.appended = False

    async def _receive(self) -> None:
        idle = self.state.settings.server.live_idle_s
        receiving = asyncio.ensure_future(self.ws.receive())
        try:
            while True:
                quiet_since = self.loop.time()
                while not receiving.done():
                    await asyncio.wait({receiving}, timeout=min(1.0, idle))
                    if self.session is not None and not self.session.idle:
                        quiet_since = self.loop.time()  # still transcribing what was sent: not idle
                    elif not receiving.done() and self.loop.time() - quiet_since >= idle:
                        await _close(self.ws, _CLOSE_POLICY, f"no events for {idle:g} s; closing the idle session")
                        return
                try:
                    message = receiving.result()
                except WebSocketDisconnect:
                    return
                if not await self._message(message):
                    return
                receiving = asyncio.ensure_future(self.ws.receive())
        finally:
            receiving.cancel()

    async def _message(self, message: dict) -> bool:
        """Handle one frame; False when the socket is done."""
        if message["type"] == "websocket.disconnect":
            return False
        if message.get("text") is None:
            await _close(self.ws, _CLOSE_POLICY, "client events are JSON text frames, not binary")
            return False
        try:
            await self._handle(message["text"])
        except HarkenError as exc:
            await self._send(_error_event(exc))
        return True

    async def _handle(self, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError:
            raise InvalidOptionError("the event is not valid JSON") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise InvalidOptionError("an event is a JSON object with a string `type`", param="type")
        kind = event["type"]
        if kind in ("session.update", "transcription_session.update"):
            await self._update(event, kind)
        elif kind == "input_audio_buffer.append":
            self._append(event)
        elif kind == "input_audio_buffer.commit":
            self.session.commit()
        elif kind == "input_audio_buffer.clear":
            self.session.clear()
            await self._send({"type": "input_audio_buffer.cleared"})
        else:
            raise InvalidOptionError(
                f"event type {kind!r} is not part of a transcription session (session.update, "
                "input_audio_buffer.append, input_audio_buffer.commit, input_audio_buffer.clear)",
                param="type",
            )

    async def _update(self, event: dict, kind: str) -> None:
        session = event.get("session")
        if not isinstance(session, dict):
            raise InvalidOptionError("session.update needs a `session` object", param="session")
        dialect = "beta" if kind == "transcription_session.update" else "ga"
        config = _beta_config(session, self.config) if dialect == "beta" else _ga_config(session, self.config)
        if self.appended and (config.encoding, config.rate) != (self.config.encoding, self.config.rate):
            raise InvalidOptionError(
                "the audio format cannot change once audio was appended; open a new session", param="session.audio.input.format"
            )
        self.state.service.registry.resolve(config.live.model)  # an unknown model: an error, the session unchanged
        self.dialect = dialect
        if config.live != self.config.live or self.session is None:
            self.config = config
            await self._start()
        else:
            self.config = config
        name = "transcription_session.updated" if dialect == "beta" else "session.updated"
        await self._send({"type": name, "session": self._session_object()})

    def _append(self, event: dict) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise InvalidOptionError("input_audio_buffer.append needs `audio`, base64 text", param="audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidOptionError("`audio` is not valid base64", param="audio") from None
        self.appended = True
        self.session.append(self.pcm.feed(data))

    async def _send_events(self) -> None:
        while True:
            event = await self.events.get()
            try:
                await self._send(_server_event(event))
                if isinstance(event, Failed) and isinstance(event.error, LiveSessionError):
                    await self.ws.close(_CLOSE_ERROR, "the live session stopped on an internal error")
                    return
            except (WebSocketDisconnect, RuntimeError):  # the client left; the receive loop ends the session
                return

    async def _send(self, event: dict) -> None:
        event = {"event_id": "event_" + uuid.uuid4().hex[:20], **event}
        await self.ws.send_text(json.dumps(event, ensure_ascii=False))

    def _session_object(self) -> dict:
        live, c = self.config.live, self.config
        transcription = {"model": str(live.model), "language": live.language, "prompt": live.prompt or ""}
        turn = None if live.turn_detection is None else {"type": "server_vad", **_turn_fields(live.turn_detection)}
        if self.dialect == "beta":
            fmt = next(name for name, value in _BETA_FORMATS.items() if value == (c.encoding, c.rate)) \
                if (c.encoding, c.rate) in _BETA_FORMATS.values() else "pcm16"
            return {"id": self.id, "object": "realtime.transcription_session", "input_audio_format": fmt,
                    "input_audio_transcription": transcription, "turn_detection": turn,
                    "input_audio_noise_reduction": c.noise_reduction}
        ga_type = next(k for k, v in _GA_FORMATS.items() if v == c.encoding)
        fmt = {"type": ga_type, "rate": c.rate}
        return {"type": "transcription", "id": self.id, "object": "realtime.transcription_session",
                "audio": {"input": {"format": fmt, "transcription": transcription, "turn_detection": turn,
                                    "noise_reduction": c.noise_reduction}},
                "include": []}


def _turn_fields(t: TurnDetection) -> dict:
    return {"threshold": t.threshold, "prefix_padding_ms": t.prefix_padding_ms, "silence_duration_ms": t.silence_duration_ms}


def _ga_config(session: dict, current: _Config) -> _Config:
    kind = session.get("type", "transcription")
    if kind != "transcription":
        raise InvalidOptionError(
            f"session.type {kind!r} is not served: harken's realtime sessions are transcription sessions",
            param="session.type",
        )
    audio = _object(session.get("audio", {}), "session.audio")
    given = _object(audio.get("input", {}), "session.audio.input")
    config = current
    if "format" in given:
        fmt = _object(given["format"], "session.audio.input.format")
        encoding = _GA_FORMATS.get(fmt.get("type"))
        if encoding is None:
            raise InvalidOptionError(
                f"audio format {fmt.get('type')!r} is not supported: audio/pcm, audio/pcmu or audio/pcma",
                param="session.audio.input.format.type",
            )
        rate = 8_000 if encoding != "pcm16" else fmt.get("rate", 24_000)
        PcmStream(encoding, rate)  # checks the rate
        config = replace(config, encoding=encoding, rate=rate)
    return _common(config, given, "transcription", "turn_detection", "noise_reduction", "session.audio.input")


def _beta_config(session: dict, current: _Config) -> _Config:
    config = current
    if "input_audio_format" in session:
        fmt = session["input_audio_format"]
        if fmt not in _BETA_FORMATS:
            raise InvalidOptionError(
                f"input_audio_format {fmt!r} is not supported: pcm16, g711_ulaw or g711_alaw", param="session.input_audio_format"
            )
        encoding, rate = _BETA_FORMATS[fmt]
        config = replace(config, encoding=encoding, rate=rate)
    return _common(config, session, "input_audio_transcription", "turn_detection", "input_audio_noise_reduction", "session")


def _common(config: _Config, given: dict, transcription_key: str, turn_key: str, noise_key: str, where: str) -> _Config:
    live = config.live
    if transcription_key in given:
        t = _object(given[transcription_key] or {}, f"{where}.{transcription_key}")
        for key in ("model", "language", "prompt"):
            if t.get(key) is not None and not isinstance(t[key], str):
                raise InvalidOptionError(f"{key} must be a string", param=f"{where}.{transcription_key}.{key}")
        live = replace(live, model=t.get("model") or live.model, language=t.get("language") or None,
                       prompt=t.get("prompt") or None)
        if live.language is not None and not live.language.isalpha():
            raise InvalidOptionError(f"language must be a code such as 'en', not {live.language!r}",
                                     param=f"{where}.{transcription_key}.language")
    if turn_key in given:
        live = replace(live, turn_detection=_turn_detection(given[turn_key], f"{where}.{turn_key}"))
    noise = given.get(noise_key, config.noise_reduction)  # accepted and reported; harken does not denoise
    return replace(config, live=live, noise_reduction=noise)


def _turn_detection(value: Any, where: str) -> TurnDetection | None:
    if value is None:
        return None
    value = _object(value, where)
    if value.get("type", "server_vad") != "server_vad":
        raise InvalidOptionError(f"turn_detection type {value.get('type')!r} is not supported: server_vad or null",
                                 param=f"{where}.type")
    defaults = TurnDetection()
    try:
        return TurnDetection(
            threshold=value.get("threshold", defaults.threshold),
            prefix_padding_ms=value.get("prefix_padding_ms", defaults.prefix_padding_ms),
            silence_duration_ms=value.get("silence_duration_ms", defaults.silence_duration_ms),
        )
    except InvalidOptionError as exc:
        raise InvalidOptionError(exc.message, param=f"{where}.{exc.param}") from None


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidOptionError(f"{where} must be an object", param=where)
    return value


def _server_event(event: LiveEvent) -> dict:
    prefix = "conversation.item.input_audio_transcription"
    if isinstance(event, SpeechStarted):
        return {"type": "input_audio_buffer.speech_started", "audio_start_ms": event.audio_start_ms, "item_id": event.item}
    if isinstance(event, SpeechStopped):
        return {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": event.audio_end_ms, "item_id": event.item}
    if isinstance(event, Committed):
        return {"type": "input_audio_buffer.committed", "item_id": event.item, "previous_item_id": event.previous_item}
    if isinstance(event, TextDelta):
        return {"type": f"{prefix}.delta", "item_id": event.item, "content_index": 0, "delta": event.delta}
    if isinstance(event, Completed):
        t = event.transcript
        return {"type": f"{prefix}.completed", "item_id": event.item, "content_index": 0, "transcript": t.text,
                "usage": {"type": "duration", "seconds": round(t.duration, 3)},
                "warnings": [asdict(w) for w in t.warnings]}
    if event.item is None:
        return _error_event(event.error)
    error = _error_event(event.error)["error"]
    return {"type": f"{prefix}.failed", "item_id": event.item, "content_index": 0, "error": error}


def _error_event(exc: HarkenError) -> dict:
    return {"type": "error", **envelope(exc.message, exc.type, exc.code, exc.param)}
