"""Decoding in throwaway child processes, so that a crash, a hang or a memory bomb in FFmpeg or
PyAV costs one file, never the process that asked (the server, a batch run).

A small host process (`python -m harken.audio.decoder_host`) imports the decoder once and then
forks one child per file. The child receives the bytes over a socket of its own, decodes them
under an address-space and a CPU-time limit, and sends back the samples or the AudioError. A
child that dies or runs past its deadline is that file's error; the host never decodes, and is
started again if it is ever gone. multiprocessing's forkserver would do the forking, but it
re-runs the caller's main script in every child, which a library must not do.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from harken import errors
from harken.audio.decode import Audio, RawAudio, decode_audio
from harken.errors import AudioDecodeError, AudioError, DecodeLimitError

if TYPE_CHECKING:
    from harken.config import DecodeSettings

__all__ = ["Decoder", "InlineDecoder", "ProcessDecoder", "make_decoder"]

log = logging.getLogger("harken.audio")

_HEADER = struct.Struct("!Q")
# Memory a child may use beyond what it starts with: the result buffer (which grows by
# doubling), the input and a margin for FFmpeg's own buffers.
_BASE_MARGIN = 512 << 20


class Decoder(Protocol):
    def decode(self, raw: RawAudio, *, max_duration: float | None = None) -> Audio: ...

    def start(self) -> None: ...


def make_decoder(settings: DecodeSettings) -> Decoder:
    """The decoder `settings.isolation` asks for; in-process where the platform cannot fork."""
    if settings.isolation == "inline" or not (hasattr(socket, "send_fds") and hasattr(os, "fork")):
        return InlineDecoder()
    return ProcessDecoder(concurrency=settings.concurrency or os.cpu_count() or 1, timeout_s=settings.timeout_s)


class InlineDecoder:
    """decode_audio in the calling thread: no isolation, no extra process."""

    def decode(self, raw: RawAudio, *, max_duration: float | None = None) -> Audio:
        return decode_audio(raw, max_duration=max_duration)

    def start(self) -> None:
        pass


@dataclass(frozen=True)
class _Job:
    name: str | None
    max_duration: float | None
    memory_bytes: int | None
    cpu_s: int


class ProcessDecoder:
    """`decode(raw, max_duration)` like decode_audio, in a child process, at most `concurrency`
    at a time; a decode longer than `timeout_s` is killed."""

    def __init__(self, *, concurrency: int, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._slots = threading.BoundedSemaphore(max(1, concurrency))

    def start(self) -> None:
        """Start the host now (it imports in the background) rather than on the first decode."""
        _HOST.control()

    def decode(self, raw: RawAudio, *, max_duration: float | None = None) -> Audio:
        with self._slots:
            return self._decode(raw, max_duration)

    def _decode(self, raw: RawAudio, max_duration: float | None) -> Audio:
        label = raw.name or "audio"
        deadline = time.monotonic() + self.timeout_s
        memory = None
        if max_duration is not None:
            memory = _BASE_MARGIN + 2 * len(raw.data) + 3 * int(max_duration * 16_000) * 4
        job = _Job(raw.name, max_duration, memory, int(self.timeout_s) + 1)
        sock = _HOST.open_channel()
        pid = None
        try:
            sock.settimeout(self.timeout_s)
            pid = int(_recv_json(sock)["pid"])
            _send(sock, json.dumps(job.__dict__).encode())
            _send(sock, raw.data)
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            reply = _recv_json(sock)
            if not reply["ok"]:
                raise _rebuild(reply, label)
            samples = np.empty(reply["samples"], dtype=np.float32)
            _recv_into(sock, memoryview(samples).cast("B"))
            return Audio(samples, raw.sha256, reply["source_rate"], reply["source_channels"], reply["source_format"], raw.name)
        except socket.timeout:
            _kill(pid)
            raise DecodeLimitError(f"{label}: decoding took longer than {self.timeout_s:g} s and was stopped") from None
        except (EOFError, ConnectionError):  # the child is gone: it died on this file
            raise AudioDecodeError(f"{label}: the decoder crashed on this file") from None
        finally:
            sock.close()


def _rebuild(reply: dict, label: str) -> AudioError:
    cls = getattr(errors, reply["error"], None)
    if isinstance(cls, type) and issubclass(cls, AudioError):
        return cls(reply["message"], param=reply.get("param"))
    log.error("the decoder failed on %s: %s", label, reply["message"])
    return AudioDecodeError(f"{label}: the decoder failed on this file")


def _kill(pid: int | None) -> None:
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class _Host:
    """The one host process of this process, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None

    def control(self) -> socket.socket:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            return self._sock

    def open_channel(self) -> socket.socket:
        """A socket connected to a freshly forked child."""
        for attempt in range(2):
            control = self.control()
            mine, theirs = socket.socketpair()
            try:
                with self._lock:
                    socket.send_fds(control, [b"j"], [theirs.fileno()])
                return mine
            except OSError:  # the host is gone: start another once
                mine.close()
                with self._lock:
                    self._stop()
                if attempt:
                    raise AudioDecodeError("the audio decoder could not be started") from None
            finally:
                theirs.close()
        raise AssertionError("unreachable")

    def _start(self) -> None:
        self._stop()
        mine, theirs = socket.socketpair()
        # One BLAS thread: the host forks, and a fork copies only the calling thread.
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "harken.audio.decoder_host", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL, close_fds=True,
        )
        theirs.close()
        self._sock = mine

    def _stop(self) -> None:
        if self._sock is not None:
            self._sock.close()  # the host exits when its control socket closes
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None


_HOST = _Host()


# --- wire format: 8-byte length, then the payload ------------------------------------------------


def _send(sock: socket.socket, payload: bytes | memoryview) -> None:
    sock.sendall(_HEADER.pack(len(payload)))
    sock.sendall(payload)


def _recv_exact(sock: socket.socket, n: int) -> bytearray:
    buffer = bytearray(n)
    _recv_into(sock, memoryview(buffer), with_header=False)
    return buffer


def _recv_into(sock: socket.socket, view: memoryview, *, with_header: bool = True) -> None:
    if with_header:
        (n,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
        if n != len(view):
            raise ConnectionError("unexpected payload size")
    got = 0
    while got < len(view):
        k = sock.recv_into(view[got:])
        if k == 0:
            raise EOFError
        got += k


def _recv_json(sock: socket.socket) -> dict:
    (n,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    return json.loads(bytes(_recv_exact(sock, n)))


def _recv_blob(sock: socket.socket) -> bytes:
    (n,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    return bytes(_recv_exact(sock, n))


# --- the host and its children -------------------------------------------------------------------


def host_main(control_fd: int) -> None:
    """The host process: fork a decoding child for every socket the parent sends."""
    control = socket.socket(fileno=control_fd)
    _warm()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent to handle
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1, 4)
        except OSError:
            return
        if not message:
            return  # the parent is gone
        for fd in fds:
            if os.fork() == 0:
                control.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _child(fd)
            os.close(fd)


def _warm() -> None:
    """Decode a tiny clip once, so that FFmpeg's and soxr's lazy set-up is done before any fork."""
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44_100)
        w.writeframes(bytes(4 * 4410))
    decode_audio(RawAudio(buffer.getvalue(), "", "warm-up"))
    import resource  # noqa: F401  (the child's limits need it)


def _child(fd: int) -> None:
    code = 0
    try:
        sock = socket.socket(fileno=fd)
        _send(sock, json.dumps({"pid": os.getpid()}).encode())
        job = _Job(**json.loads(_recv_blob(sock)))
        data = _recv_blob(sock)
        _limit(job)
        try:
            audio = decode_audio(RawAudio(data, "", job.name), max_duration=job.max_duration)
        except AudioError as exc:
            _send(sock, json.dumps({"ok": False, "error": type(exc).__name__, "message": exc.message, "param": exc.param}).encode())
        except MemoryError:
            message = f"{job.name or 'audio'}: decoding needs more memory than a file of this duration may use"
            _send(sock, json.dumps({"ok": False, "error": "DecodeLimitError", "message": message}).encode())
        except Exception as exc:  # a bug of ours, not the file's: the parent logs it
            _send(sock, json.dumps({"ok": False, "error": "internal", "message": f"{type(exc).__name__}: {exc}"}).encode())
        else:
            meta = {"ok": True, "samples": len(audio.samples), "source_rate": audio.source_rate,
                    "source_channels": audio.source_channels, "source_format": audio.source_format}
            _send(sock, json.dumps(meta).encode())
            _send(sock, memoryview(audio.samples).cast("B"))
    except BaseException:  # the parent reads a missing answer as a crash
        code = 1
    os._exit(code)


def _limit(job: _Job) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (job.cpu_s, job.cpu_s + 1))
    if job.memory_bytes is not None:
        try:
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return  # not Linux: no way to know the base, so no address-space limit
        limit = used + job.memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

