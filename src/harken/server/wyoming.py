"""Home Assistant's Wyoming protocol over TCP (`server.wyoming_port`), on the app's one Service.

- `describe` -> `info`: one ASR program (the installed Whisper models) and one TTS program (the
  installed Piper voices).
- `transcribe` (model, language), then `audio-start` / `audio-chunk`s / `audio-stop` -> a
  `transcript-start`, `transcript-chunk`s as text settles (a live.LiveSession without turn
  detection: the client's audio-stop ends the utterance), `transcript-stop`, then the final
  `transcript`. Audio without a `transcribe` before it goes to the default model.
- `synthesize` -> `audio-start`, one or more `audio-chunk`s per sentence (16-bit mono PCM),
  `audio-stop`.

Every problem with a request is an `error` event and the connection goes on; a connection is
closed when it breaks the framing (bad JSON, oversized header, data or payload), idles for
`server.live_idle_s`, or finds the server full (each connection holds one of
`server.live_streams`, shared with /v1/realtime). An utterance longer than `max_audio_s` is
stopped there with an error; the rest of its audio, up to its audio-stop, is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from wyoming.asr import (
    Transcribe,
    Transcript,
    TranscriptChunk,
    TranscriptStart,
    TranscriptStop,
)
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, Eventable, async_write_event
from wyoming.info import (
    AsrModel,
    AsrProgram,
    Attribution,
    Describe,
    Info,
    TtsProgram,
    TtsVoice,
)
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler, AsyncServer
from wyoming.tts import Synthesize

from harken import __version__
from harken.audio.encode import get_speech_format
from harken.audio.pcm import PcmStream
from harken.engines.base import Capability
from harken.errors import HarkenError, InvalidOptionError
from harken.live import (
    Completed,
    Failed,
    LiveEvent,
    LiveOptions,
    LiveSession,
    TextDelta,
)
from harken.server.state import ServerState
from harken.service import DEFAULT_NAMES

__all__ = ["WyomingHandler", "WyomingServer"]

log = logging.getLogger("harken.server.wyoming")

ATTRIBUTION = Attribution(name="harken", url="https://github.com/harken")
PROGRAM = "harken"

# Framing limits: a header line (asyncio's stream limit), its extra data, one event's payload.
_LINE_LIMIT = 64 * 1024
_MAX_DATA_BYTES = 1024 * 1024
_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024  # an audio chunk: 4 MiB is over 20 s of 48 kHz stereo
_MAX_CHANNELS = 16
_STOP_WAIT_S = 10.0  # at shutdown, how long open connections get to finish
_VOICE_LANGUAGE = re.compile(r"(?:^|[^A-Za-z])([a-z]{2,3}_[A-Z]{2})(?:[^A-Za-z]|$)")


class _Broken(Exception):
    """The client broke the protocol's framing: the stream cannot be read on."""


class WyomingServer:
    """Serves Wyoming on `tcp://host:port` until `stop`."""

    def __init__(self, state: ServerState, host: str, port: int) -> None:
        self.state = state
        uri_host = f"[{host}]" if ":" in host else host
        self.server = AsyncServer.from_uri(f"tcp://{uri_host}:{port}")
        self.tasks: set[asyncio.Task] = set()

    @property
    def port(self) -> int | None:
        """The port bound (useful when configured as 0)."""
        server = getattr(self.server, "_server", None)
        if server is None or not server.sockets:
            return None
        return server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        await self.server.start(partial(WyomingHandler, self))
        log.info("serving Wyoming on tcp port %s", self.port)
        settings = self.state.settings
        if settings.api_keys or settings.api_keys_file is not None:
            log.warning("the Wyoming port %s takes no API keys (the protocol has none): anyone who can reach "
                        "it can use the models; bind it to a trusted network", self.port)

    async def stop(self) -> None:
        """Stop listening, end every connection, and wait (a while) for their work to finish."""
        await self.server.stop()
        tasks = {t for t in self.tasks if not t.done()}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=_STOP_WAIT_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)


@dataclass
class _Utterance:
    """The audio of one transcription, from audio-start to audio-stop."""

    session: LiveSession
    events: asyncio.Queue
    rate: int
    width: int
    channels: int
    pcm: PcmStream
    carry: bytes = b""  # the bytes of a frame a chunk split
    seconds: float = 0.0
    texts: list[str] = field(default_factory=list)  # each item's final text
    items: set[str] = field(default_factory=set)  # the items a transcript-chunk told
    language: str | None = None
    failed: bool = False
    sender: asyncio.Task | None = None


class WyomingHandler(AsyncEventHandler):
    """One client connection."""

    def __init__(self, owner: WyomingServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.owner, self.state = owner, owner.state
        self.service = owner.state.service
        self.loop = asyncio.get_running_loop()
        self.write_lock = asyncio.Lock()
        self.options: LiveOptions | None = None  # from the last `transcribe`, for the next audio
        self.utterance: _Utterance | None = None
        self.dropping = False  # an utterance was refused: its chunks are ignored until audio-stop

    # --- the connection ------------------------------------------------------------------------

    async def run(self) -> None:
        task = asyncio.current_task()
        self.owner.tasks.add(task)
        self._is_running = True
        counted = False
        try:
            limit = self.state.settings.server.live_streams
            if self.state.live_streams >= limit:
                await self._error(
                    f"the server already has {self.state.live_streams} live streams open; retry later", "server_busy"
                )
                return
            self.state.live_streams += 1
            counted = True
            idle = self.state.settings.server.live_idle_s
            while self._is_running:
                try:
                    event = await asyncio.wait_for(self._read_event(), timeout=idle)
                except TimeoutError:
                    await self._error(f"no events for {idle:g} s; closing the idle connection", "idle")
                    break
                except _Broken as exc:
                    await self._error(str(exc), "invalid_event")
                    break
                if event is None or not await self.handle_event(event):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                await self.disconnect()
            finally:
                if counted:
                    self.state.live_streams -= 1
                self.writer.close()
                self.owner.tasks.discard(task)

    async def _read_event(self) -> Event | None:
        """The next event, None at the end of the stream. Unlike wyoming's own reader, the sizes
        a client declares are capped before anything is read, and broken framing is told."""
        try:
            line = await self.reader.readline()
        except ValueError:  # longer than the stream's limit
            raise _Broken(f"an event header is longer than {_LINE_LIMIT} bytes") from None
        if not line or not line.endswith(b"\n"):
            return None  # the client left (mid-line or between events)
        try:
            header = json.loads(line)
        except ValueError:
            raise _Broken("an event header is not valid JSON") from None
        if not isinstance(header, dict) or not isinstance(header.get("type"), str):
            raise _Broken("an event header is a JSON object with a string `type`")
        data = header.get("data")
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise _Broken("an event's `data` is a JSON object")
        data_length = _length(header, "data_length", _MAX_DATA_BYTES)
        payload_length = _length(header, "payload_length", _MAX_PAYLOAD_BYTES)
        if data_length:
            try:
                extra = json.loads(await self.reader.readexactly(data_length))
            except ValueError:
                raise _Broken("an event's data is not valid JSON") from None
            if not isinstance(extra, dict):
                raise _Broken("an event's data is a JSON object")
            data.update(extra)
        payload = await self.reader.readexactly(payload_length) if payload_length else None
        return Event(type=header["type"], data=data, payload=payload)

    async def write_event(self, event: Event) -> None:
        """Send an event; a client that has gone ends the connection instead of raising."""
        async with self.write_lock:
            if not self._is_running or self.writer.is_closing():
                self._is_running = False
                return
            try:
                await async_write_event(event, self.writer)
            except (ConnectionError, RuntimeError):
                self._is_running = False

    async def _send(self, message: Eventable) -> None:
        await self.write_event(message.event())

    async def _error(self, text: str, code: str | None = None) -> None:
        await self._send(Error(text=text, code=code))

    async def disconnect(self) -> None:
        """The client left (or was sent away): open audio is dropped, its work freed."""
        await self._drop_utterance()

    # --- events ---------------------------------------------------------------------------------

    async def handle_event(self, event: Event) -> bool:
        try:
            return await self._dispatch(event)
        except HarkenError as exc:
            await self._error(exc.message, exc.code)
        except Exception:  # a bug: told as an internal error; this connection and the others go on
            log.exception("Wyoming event %r failed", event.type)
            await self._error(f"internal error handling {event.type!r}", "internal_error")
        return self._is_running

    async def _dispatch(self, event: Event) -> bool:
        kind = event.type
        if Describe.is_type(kind):
            await self._send(await asyncio.to_thread(self._info))
        elif Ping.is_type(kind):
            await self._send(Pong(text=event.data.get("text") if isinstance(event.data.get("text"), str) else None))
        elif Transcribe.is_type(kind):
            await self._transcribe(_parse(Transcribe, event))
        elif AudioStart.is_type(kind):
            await self._audio_start(_parse(AudioStart, event))
        elif AudioChunk.is_type(kind):
            return await self._audio_chunk(_parse(AudioChunk, event))
        elif AudioStop.is_type(kind):
            await self._audio_stop()
        elif Synthesize.is_type(kind):
            await self._synthesize(_parse(Synthesize, event))
        # Anything else (select-program, streaming synthesis, ...) is dropped, as Wyoming asks.
        return self._is_running

    # --- describe -------------------------------------------------------------------------------

    def _info(self) -> Info:
        models, voices = [], []
        for m in self.service.registry.describe():
            if not m.installed:
                continue
            if m.engine == "whisper":
                models.append(AsrModel(
                    name=m.name, attribution=ATTRIBUTION, installed=True, description=m.description,
                    version=__version__, languages=_whisper_languages(m.name),
                ))
            elif m.engine == "piper":
                voices.append(TtsVoice(
                    name=m.name, attribution=ATTRIBUTION, installed=True, description=m.description,
                    version=__version__, languages=_voice_languages(m.name, m.aliases),
                ))
        asr = AsrProgram(
            name=PROGRAM, attribution=ATTRIBUTION, installed=True, version=__version__,
            description="harken speech to text (Whisper)", models=models, supports_transcript_streaming=True,
        )
        tts = TtsProgram(
            name=PROGRAM, attribution=ATTRIBUTION, installed=True, version=__version__,
            description="harken text to speech (Piper)", voices=voices,
        )
        return Info(asr=[asr], tts=[tts])

    # --- speech to text -------------------------------------------------------------------------

    async def _transcribe(self, request: Transcribe) -> None:
        self.options = None  # a refused request does not leave the previous one in force
        name = request.name
        if name is not None and not isinstance(name, str):
            raise InvalidOptionError("`name` is a model name", param="name")
        model = self.state.settings.default_model if name is None or name in DEFAULT_NAMES else name
        entry = self.service.registry.resolve(model, task="transcribe")  # an unknown name: an error now
        if entry.engine == "piper":
            raise InvalidOptionError(f"{entry.name!r} is a voice, not a speech-to-text model", param="name")
        self.options = LiveOptions(model=entry.name, language=_language(request.language), turn_detection=None)

    async def _audio_start(self, start: AudioStart) -> None:
        await self._drop_utterance()  # a second audio-start: the first utterance is abandoned
        self.dropping = False
        options, self.options = self.options, None  # a transcribe is for the audio after it
        try:
            await self._open(start.rate, start.width, start.channels, options)
        except HarkenError:
            self.dropping = True  # the chunks of a refused utterance are not a new one
            raise

    async def _open(self, rate: Any, width: Any, channels: Any, options: LiveOptions | None) -> None:
        pcm = _pcm_stream(rate, width, channels)
        options = options or LiveOptions(model=self.state.settings.default_model, turn_detection=None)
        events: asyncio.Queue[LiveEvent | None] = asyncio.Queue()
        emit = lambda event: self.loop.call_soon_threadsafe(events.put_nowait, event)
        session = await asyncio.to_thread(self._live_session, options, emit)
        utterance = _Utterance(session, events, rate, width, channels, pcm)
        utterance.sender = asyncio.ensure_future(self._send_live(utterance))
        self.utterance = utterance
        await self._send(TranscriptStart(language=options.language))

    def _live_session(self, options: LiveOptions, emit) -> LiveSession:
        session = LiveSession(self.service, options, emit)  # loads the model
        if Capability.TRANSCRIBE not in self.service.registry.load(session.entry.name).engine.capabilities:
            session.close(finish=False)
            raise InvalidOptionError(f"model {session.entry.name!r} cannot transcribe", param="name")
        return session

    async def _audio_chunk(self, chunk: AudioChunk) -> bool:
        if self.utterance is None:
            if self.dropping:
                return True
            try:  # audio without audio-start: lenient, the chunk's format starts an utterance
                await self._open(chunk.rate, chunk.width, chunk.channels, self.options)
            except HarkenError:
                self.dropping = True
                raise
            self.options = None
        u = self.utterance
        if (chunk.rate, chunk.width, chunk.channels) != (u.rate, u.width, u.channels):
            pcm = _pcm_stream(chunk.rate, chunk.width, chunk.channels)  # checked before the old one is let go
            self._append(u, u.pcm.flush())
            u.rate, u.width, u.channels, u.pcm, u.carry = chunk.rate, chunk.width, chunk.channels, pcm, b""
        data = u.carry + chunk.audio
        frame = 2 * u.channels
        whole = len(data) // frame * frame
        data, u.carry = data[:whole], data[whole:]
        u.seconds += whole // frame / u.rate
        limit = self.state.settings.max_audio_s
        if u.seconds > limit:  # the utterance stops here: its work is dropped, the rest of its audio ignored
            await self._drop_utterance()
            self.dropping = True
            await self._error(f"the utterance is longer than the {limit:g} s limit; it was stopped", "audio_too_long")
            return True
        if u.channels > 1:
            data = np.frombuffer(data, "<i2").reshape(-1, u.channels).mean(axis=1).round().astype("<i2").tobytes()
        self._append(u, u.pcm.feed(data))
        return True

    def _append(self, u: _Utterance, samples: np.ndarray) -> None:
        if len(samples):
            u.session.append(samples)

    async def _audio_stop(self) -> None:
        u, self.utterance = self.utterance, None
        self.dropping = False
        if u is None:
            return  # nothing open (a refused utterance, or a stray audio-stop)
        try:
            self._append(u, u.pcm.flush())
            await asyncio.to_thread(u.session.close, finish=True)
        finally:
            u.events.put_nowait(None)  # after every event the session emitted (FIFO via the loop)
            await u.sender
        await self._send(TranscriptStop())
        if not u.failed:
            await self._send(Transcript(text=" ".join(t for t in u.texts if t), language=u.language))

    async def _send_live(self, u: _Utterance) -> None:
        while (event := await u.events.get()) is not None:
            if isinstance(event, TextDelta) and event.delta:
                delta = event.delta
                if event.item not in u.items and any(u.texts):
                    delta = " " + delta.lstrip()  # a later item (past 30 s) joins with a space
                u.items.add(event.item)
                await self._send(TranscriptChunk(text=delta))
            elif isinstance(event, Completed):
                u.texts.append(event.transcript.text.strip())
                u.language = u.language or event.transcript.language
            elif isinstance(event, Failed):
                u.failed = True
                await self._error(event.error.message, event.error.code)

    async def _drop_utterance(self) -> None:
        u, self.utterance = self.utterance, None
        if u is None:
            return
        await asyncio.to_thread(u.session.close, finish=False)
        u.events.put_nowait(None)
        u.sender.cancel()

    # --- text to speech -------------------------------------------------------------------------

    async def _synthesize(self, request: Synthesize) -> None:
        if not isinstance(request.text, str):
            raise InvalidOptionError("`text` is the text to speak", param="text")
        chunks, rate = await asyncio.to_thread(self._begin_speech, request)
        step = rate * 2  # at most a second of audio an event
        await self._send(AudioStart(rate=rate, width=2, channels=1))
        sent = 0
        try:
            while self._is_running:
                data = await asyncio.to_thread(next, chunks, None)  # one sentence
                if data is None:
                    break
                for at in range(0, len(data), step):
                    piece = data[at:at + step]
                    await self._send(AudioChunk(rate=rate, width=2, channels=1, audio=piece, timestamp=sent * 1000 // rate))
                    sent += len(piece) // 2
        except HarkenError as exc:  # after audio-start: told, and the audio still ends
            await self._error(exc.message, exc.code)
        finally:
            if not self._is_running:
                with contextlib.suppress(ValueError):  # still running in its thread (shutdown)
                    chunks.close()  # the client left mid-speech: the rest is not synthesised
        await self._send(AudioStop(timestamp=sent * 1000 // rate))

    def _begin_speech(self, request: Synthesize) -> tuple[Any, int]:
        """The sentences' raw PCM bytes (not yet synthesised) and their rate; speak_stream checks
        the text and the voice (and loads it) here, before the first byte."""
        voice = self._voice_for(request)
        fmt = get_speech_format("pcm")  # 16-bit little-endian mono, at fmt.rate (else the voice's)
        chunks = self.service.speak_stream(request.text, voice=voice, format=fmt.name)
        rate = fmt.rate or self.service.registry.load(self.service.registry.resolve_voice(voice).name).engine.rate
        return chunks, rate

    def _voice_for(self, request: Synthesize) -> str | None:
        """The voice asked for by name, or else the first installed one for the language asked."""
        wanted = request.voice
        if wanted is None:
            return None
        if wanted.name is not None:
            if not isinstance(wanted.name, str):
                raise InvalidOptionError("`voice.name` is a voice name", param="voice")
            return wanted.name
        if isinstance(wanted.language, str) and wanted.language:
            key = wanted.language.replace("-", "_").lower()
            for m in self.service.registry.describe():
                if m.engine == "piper" and m.installed:
                    langs = [lang.lower() for lang in _voice_languages(m.name, m.aliases)]
                    if key in langs or any(lang.split("_")[0] == key for lang in langs):
                        return m.name
        return None


def _length(header: dict, key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Broken(f"`{key}` is a byte count")
    if value > limit:
        raise _Broken(f"`{key}` {value} is over the limit of {limit} bytes")
    return value


def _parse(cls: type[Eventable], event: Event) -> Any:
    """The typed event; a field missing or of the wrong type is an error about the event."""
    try:
        message = cls.from_event(event)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InvalidOptionError(f"malformed {event.type!r} event") from None
    if isinstance(message, AudioChunk) and not isinstance(message.audio, bytes):
        raise InvalidOptionError("an audio-chunk's payload is its audio")
    return message


def _pcm_stream(rate: Any, width: Any, channels: Any) -> PcmStream:
    for name, value in (("rate", rate), ("width", width), ("channels", channels)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidOptionError(f"audio `{name}` must be a whole number, not {value!r}", param=name)
    if width != 2:
        raise InvalidOptionError(f"audio must be 16-bit PCM (width 2), not width {width}", param="width")
    if not 1 <= channels <= _MAX_CHANNELS:
        raise InvalidOptionError(f"audio must have 1 to {_MAX_CHANNELS} channels, not {channels}", param="channels")
    return PcmStream("pcm16", rate)


def _whisper_codes() -> tuple[str, ...]:
    try:
        from faster_whisper.tokenizer import _LANGUAGE_CODES
    except ImportError:  # pragma: no cover - faster-whisper is a core dependency
        return ("en",)
    return tuple(_LANGUAGE_CODES)


def _whisper_languages(name: str) -> list[str]:
    return ["en"] if name.endswith(".en") else list(_whisper_codes())


def _voice_languages(name: str, aliases: tuple[str, ...]) -> list[str]:
    """A Piper voice's language, as Piper names it (en_US), from its name or aliases."""
    found: list[str] = []
    for text in (name, *aliases):
        for match in _VOICE_LANGUAGE.finditer(text):
            if match.group(1) not in found:
                found.append(match.group(1))
    return found


def _language(language: Any) -> str | None:
    """Whisper's code for a language as Home Assistant may send it (en, en-US, en_US)."""
    if language is None or language == "":
        return None
    if not isinstance(language, str):
        raise InvalidOptionError("`language` is a language code such as 'en'", param="language")
    code = language.strip().lower()
    codes = _whisper_codes()
    if code not in codes:
        code = re.split(r"[-_]", code, maxsplit=1)[0]
    if code not in codes:
        raise InvalidOptionError(f"unknown language {language!r}; use a code such as 'en'", param="language")
    return code
