"""`harken listen`: a file or stdin through a live session, shown as it is transcribed.

Stdin is raw 16-bit little-endian PCM (mono, `--rate`), or a WAV stream (what `arecord` writes),
recognised by its RIFF header. On a terminal the open utterance's partial text is rewritten in
place and each final line printed as it completes; piped, only final lines (or, with jsonl,
every event as one JSON object per line).
"""

from __future__ import annotations

import io
import json
import sys
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, TextIO

import numpy as np

from harken.audio import SAMPLE_RATE
from harken.audio.pcm import PcmStream
from harken.errors import AudioDecodeError, InvalidOptionError
from harken.live import (
    Committed, Completed, Failed, LiveEvent, LiveOptions, SpeechStarted, SpeechStopped, TextDelta, listen,
)
from harken.service import Service

__all__ = ["run", "file_chunks", "stdin_chunks"]

CHUNK_S = 0.1


def file_chunks(service: Service, source: str, realtime: bool) -> Iterator[np.ndarray]:
    """A file, decoded now (a bad file fails here), in 100 ms chunks; at real-time pace with `realtime`."""
    samples = service.load_audio(source).samples
    step = int(CHUNK_S * SAMPLE_RATE)

    def chunks() -> Iterator[np.ndarray]:
        start = time.monotonic()
        for i in range(0, len(samples), step):
            if realtime:
                time.sleep(max(0.0, start + i / SAMPLE_RATE - time.monotonic()))
            yield samples[i : i + step]

    return chunks()


def stdin_chunks(stream: BinaryIO, rate: int) -> Iterator[np.ndarray]:
    """Raw PCM or a WAV stream, as float32 16 kHz chunks as the bytes arrive."""
    reader = stream if hasattr(stream, "peek") else io.BufferedReader(stream)
    channels = 1
    if reader.peek(4)[:4] == b"RIFF":
        try:
            wav = wave.open(reader, "rb")
        except (wave.Error, EOFError) as exc:
            raise AudioDecodeError(f"stdin: not a WAV stream this can read ({exc})") from None
        if wav.getsampwidth() != 2:
            raise AudioDecodeError(f"stdin: WAV of {8 * wav.getsampwidth()}-bit samples; send 16-bit PCM")
        rate, channels = wav.getframerate(), wav.getnchannels()
        read = lambda: wav.readframes(int(CHUNK_S * rate))  # noqa: E731
    else:
        read = lambda: reader.read1(int(CHUNK_S * rate) * 2)  # noqa: E731
    pcm = PcmStream("pcm16", rate)
    carry = b""
    while data := read():
        if channels > 1:  # average the channels, whole frames only
            data = carry + data
            whole = len(data) // (2 * channels) * 2 * channels
            data, carry = data[:whole], data[whole:]
            frames = np.frombuffer(data, "<i2").reshape(-1, channels).mean(axis=1).astype("<i2")
            data = frames.tobytes()
        yield pcm.feed(data)
    yield pcm.flush()


@dataclass
class _View:
    out: TextIO
    fmt: str
    live: bool  # a terminal: partial text is rewritten in place
    partial: str = ""

    def show(self, event: LiveEvent) -> None:
        if self.fmt == "jsonl":
            self.out.write(json.dumps(_event_dict(event), ensure_ascii=False) + "\n")
            self.out.flush()
            return
        if isinstance(event, TextDelta) and self.live:
            self.partial += event.delta
            self.out.write("\r\x1b[K" + self.partial[-(_width() - 1):])
        elif isinstance(event, Completed):
            self.out.write(("\r\x1b[K" if self.live else "") + event.transcript.text + "\n")
            self.partial = ""
        elif isinstance(event, Failed):
            sys.stderr.write(f"harken: error: {event.error.message}\n")
        self.out.flush()


def _width() -> int:
    import shutil

    return shutil.get_terminal_size().columns


def _event_dict(event: LiveEvent) -> dict:
    if isinstance(event, SpeechStarted):
        return {"type": "speech_started", "item": event.item, "audio_start_ms": event.audio_start_ms}
    if isinstance(event, SpeechStopped):
        return {"type": "speech_stopped", "item": event.item, "audio_end_ms": event.audio_end_ms}
    if isinstance(event, Committed):
        return {"type": "committed", "item": event.item, "previous_item": event.previous_item}
    if isinstance(event, TextDelta):
        return {"type": "delta", "item": event.item, "delta": event.delta}
    if isinstance(event, Completed):
        t = event.transcript
        return {"type": "completed", "item": event.item, "text": t.text, "language": t.language,
                "duration": t.duration, "warnings": [w.code for w in t.warnings]}
    return {"type": "failed", "item": event.item, "error": {"code": event.error.code, "message": event.error.message}}


def run(service: Service, source: str, options: LiveOptions, *, fmt: str, realtime: bool, rate: int) -> int:
    """Listen to `source` (a path, URL or - for stdin); returns how many items failed."""
    if fmt not in ("text", "jsonl"):
        raise InvalidOptionError(f"--format must be text or jsonl, not {fmt!r}", param="format")
    chunks = stdin_chunks(sys.stdin.buffer, rate) if source == "-" else file_chunks(service, source, realtime)
    view = _View(sys.stdout, fmt, live=fmt == "text" and sys.stdout.isatty())
    failed = 0
    for event in listen(service, chunks, options):
        failed += isinstance(event, Failed)
        view.show(event)
    return failed
