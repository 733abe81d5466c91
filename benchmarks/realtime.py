"""Live transcription benchmark: harken's OpenAI Realtime WebSocket under concurrent streams.

    python benchmarks/realtime.py [--data ../shared/data] [--streams 1 2 4 8] [--seconds 60]

One server (a real uvicorn on 127.0.0.1, in this process, the result cache off) for the whole
run. For each stream count, that many sockets, driven by the official openai client, each play
English clips from the shared data one after another (each clip then 1.0 s of silence, about
`--seconds` of audio a stream, every stream starting at a different clip) at real-time pace in
100 ms chunks of 24 kHz pcm16, with server_vad (silence_duration_ms 500). Prints, per stream count:

- final-text latency (p50/p95): from the wall-clock time the end of an utterance's speech was
  sent (speech_stopped's audio_end_ms less the 500 ms of silence) to its `completed` event:
  latency after the utterance ends, the 500 ms of silence included;
- time to first partial (p50/p95), utterances over 3 s: from the time the item's first audio
  (speech_started's audio_start_ms, which includes the 300 ms prefix padding) was sent to its
  first `delta`; and how many of them had a delta before their commit (a true partial);
- WER of the streamed finals (a stream's items joined in order) against harken's offline
  transcription of the same clips, and against the references;
- whether each stream keeps up with real time: its last `completed` within 3 s of its last
  audio being sent (the lag), with every item completed; then the most streams that keep up;
- the sender's worst lateness, how long the server took to end the sessions (drain), items the
  server started and never committed (lost), and `error` events, counted and printed.
`--items` also prints every item of every stream as it went.

Then a file-streaming figure: a ~100 s WAV posted to /v1/audio/transcriptions with stream=True,
the times of the first `transcript.text.delta` and of `transcript.text.done`.
Figures are wall-clock on this machine, client and server sharing its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402
import soxr  # noqa: E402

from harken import Service, Settings  # noqa: E402
from harken.audio import SAMPLE_RATE, load_audio  # noqa: E402
from harken.audio.encode import encode, get_speech_format  # noqa: E402
from harken.server import create_app  # noqa: E402
from tests.live_server import live_server  # noqa: E402
from benchmarks.asr import english_clips  # noqa: E402
from tests.wer import wer  # noqa: E402

RATE = 24_000  # what the socket is sent: pcm16 at 24 kHz
CHUNK_S = 0.1
GAP_S = 1.0  # silence after each clip
SILENCE_MS = 500  # server_vad silence_duration_ms
KEEP_UP_S = 3.0
LONG_UTTERANCE_S = 3.0
QUIET_S = 1.5  # after the audio: no open item and no event for this long ends a stream
PREFIX = "conversation.item.input_audio_transcription"


def pct(values: list[float], q: int) -> float:
    if not values:
        return math.nan
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1000:.0f}"


@dataclass
class Item:
    start_ms: int | None = None
    end_ms: int | None = None
    committed_at: float | None = None
    first_delta_at: float | None = None
    completed_at: float | None = None
    transcript: str | None = None
    failed: str | None = None


@dataclass
class Stream:
    clips: list[int]  # indexes into the clip list, in play order
    audio: bytes = b""
    sent: list[float] = field(default_factory=list)  # wall time each chunk had been sent
    late: float = 0.0  # the sender's worst lateness against its schedule
    items: dict[str, Item] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # items in commit order
    started: list[str] = field(default_factory=list)  # items in speech_started order
    errors: list[str] = field(default_factory=list)
    timed_out: bool = False

    def sent_at(self, position_ms: float) -> float:
        """The wall time the audio up to `position_ms` had been sent."""
        k = math.ceil(position_ms / (CHUNK_S * 1000)) - 1
        return self.sent[min(max(k, 0), len(self.sent) - 1)]

    def item(self, item_id: str) -> Item:
        return self.items.setdefault(item_id, Item())

    def outstanding(self) -> list[str]:
        """Committed items without their final, and the open item (the last started, not committed)."""
        waiting = [i for i in self.order if self.items[i].completed_at is None and self.items[i].failed is None]
        if self.started and self.items[self.started[-1]].committed_at is None:
            waiting.append(self.started[-1])
        return waiting

    def lost(self) -> list[str]:
        """Items the server started and then left: a later item started, this one never committed."""
        return [i for i in self.started[:-1] if self.items[i].committed_at is None]

    @property
    def last_completed(self) -> float | None:
        done = [it.completed_at for it in self.items.values() if it.completed_at is not None]
        return max(done) if done else None

    @property
    def lag(self) -> float:
        last = self.last_completed
        return math.inf if last is None or not self.sent else last - self.sent[-1]

    @property
    def keeps_up(self) -> bool:
        return not self.timed_out and not self.outstanding() and self.lag <= KEEP_UP_S

    def text(self) -> str:
        return " ".join(self.items[i].transcript for i in self.order if self.items[i].transcript)


def pcm24(samples: np.ndarray) -> bytes:
    return (np.clip(soxr.resample(samples, SAMPLE_RATE, RATE), -1, 1) * 32767).astype("<i2").tobytes()


def plan(n_clips: int, durations: list[float], streams: int, seconds: float) -> list[list[int]]:
    """Each stream's clips: from an evenly spaced first clip, in order, until `seconds` of audio."""
    out = []
    for s in range(streams):
        at, total, order = (s * n_clips) // streams, 0.0, []
        while total < seconds:
            order.append(at % n_clips)
            total += durations[at % n_clips] + GAP_S
            at += 1
        out.append(order)
    return out


def connect(url: str):
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    return client.realtime.connect(extra_query={"intent": "transcription"})


SESSION = {"type": "transcription", "audio": {"input": {
    "format": {"type": "audio/pcm", "rate": RATE},
    "transcription": {"model": "whisper-1", "language": "en"},
    "turn_detection": {"type": "server_vad", "silence_duration_ms": SILENCE_MS}}}}


async def run_stream(url: str, stream: Stream, grace_s: float, paced: bool = True) -> None:
    chunk = int(RATE * CHUNK_S) * 2
    async with connect(url) as conn:
        first = await conn.recv()
        if first.type != "session.created":
            stream.errors.append(f"first event {first.type}")
        await conn.session.update(session=SESSION)
        last_event = [time.perf_counter()]

        async def receive() -> None:
            async for event in conn:
                now = last_event[0] = time.perf_counter()
                kind = event.type
                if kind == "error":
                    stream.errors.append(f"{event.error.code or event.error.type}: {event.error.message}")
                elif kind == "input_audio_buffer.speech_started":
                    stream.item(event.item_id).start_ms = event.audio_start_ms
                    stream.started.append(event.item_id)
                elif kind == "input_audio_buffer.speech_stopped":
                    stream.item(event.item_id).end_ms = event.audio_end_ms
                elif kind == "input_audio_buffer.committed":
                    stream.item(event.item_id).committed_at = now
                    stream.order.append(event.item_id)
                elif kind == f"{PREFIX}.delta":
                    item = stream.item(event.item_id)
                    item.first_delta_at = item.first_delta_at or now
                elif kind == f"{PREFIX}.completed":
                    item = stream.item(event.item_id)
                    item.completed_at, item.transcript = now, event.transcript
                elif kind == f"{PREFIX}.failed":
                    stream.item(event.item_id).failed = event.error.message
                    stream.errors.append(f"item failed: {event.error.message}")

        reader = asyncio.ensure_future(receive())
        start = time.perf_counter()
        for k, at in enumerate(range(0, len(stream.audio), chunk)):
            wait = start + k * CHUNK_S - time.perf_counter()
            if paced and wait > 0:
                await asyncio.sleep(wait)
            stream.late = max(stream.late, -wait) if paced else 0.0
            await conn.input_audio_buffer.append(audio=base64.b64encode(stream.audio[at : at + chunk]).decode())
            stream.sent.append(time.perf_counter())
            if reader.done():
                break
        # Done once nothing is open and the server has been quiet a while (it may still be
        # catching up on audio it has not looked at yet), or after `grace_s`.
        while not reader.done():
            now = time.perf_counter()
            if not stream.outstanding() and now - max(last_event[0], stream.sent[-1]) >= QUIET_S:
                break
            if now - stream.sent[-1] > grace_s:
                stream.timed_out = True
                break
            await asyncio.sleep(0.05)
        if reader.done():
            if reader.exception() is not None:
                stream.errors.append(f"receiver: {reader.exception()!r}")
        else:
            reader.cancel()


async def run_level(url: str, streams: list[Stream], grace_s: float, paced: bool = True) -> float:
    start = time.perf_counter()
    results = await asyncio.gather(*(run_stream(url, s, grace_s, paced) for s in streams), return_exceptions=True)
    for s, r in zip(streams, results):
        if isinstance(r, BaseException):
            s.errors.append(f"stream: {r!r}")
    return time.perf_counter() - start


def file_stream(url: str, wav: bytes) -> tuple[float, float, str, int]:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=600)
    start = time.perf_counter()
    first = done = math.nan
    text, deltas = "", 0
    events = client.audio.transcriptions.create(file=("long.wav", wav), model="whisper-1", stream=True)
    for event in events:
        if event.type == "transcript.text.delta":
            deltas += 1
            if math.isnan(first):
                first = time.perf_counter() - start
        elif event.type == "transcript.text.done":
            done = time.perf_counter() - start
            text = event.text
    return first, done, text, deltas


def show_items(k: int, stream: Stream) -> None:
    """A stream's items: audio span, and seconds (from the stream's first chunk) of commit, first delta, final."""
    t0 = stream.sent[0] if stream.sent else 0.0
    rel = lambda t: "-" if t is None else f"{t - t0:.2f}"  # noqa: E731
    print(f"  stream {k}: clips {stream.clips}, {len(stream.sent) * CHUNK_S:.1f} s sent, "
          f"last chunk at {rel(stream.sent[-1] if stream.sent else None)}, timed out: {stream.timed_out}")
    for item_id, it in stream.items.items():
        end = None if it.end_ms is None else stream.sent_at(max(it.start_ms or 0, it.end_ms - SILENCE_MS))
        print(f"    {item_id} {it.start_ms}-{it.end_ms} ms, speech end sent {rel(end)}, committed {rel(it.committed_at)}, "
              f"1st delta {rel(it.first_delta_at)}, completed {rel(it.completed_at)}: {it.transcript or it.failed!r}")
    for e in stream.errors:
        print(f"    error: {e}")


def wait_idle(state, timeout: float = 300.0) -> float:
    """Seconds until the server has no live stream open (a closed socket's session has ended)."""
    start = time.perf_counter()
    while state.live_streams > 0 and time.perf_counter() - start < timeout:
        time.sleep(0.05)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8], help="concurrent stream counts")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per stream")
    parser.add_argument("--file-seconds", type=float, default=100.0, help="length of the streamed file; 0: skip it")
    parser.add_argument("--grace", type=float, default=30.0, help="how long to wait for finals after the audio ends")
    parser.add_argument("--items", action="store_true", help="also print every stream's items, as they went")
    args = parser.parse_args()
    data = args.data if (args.data / "manifest.jsonl").is_file() else ROOT / "tests" / "data"
    clips = english_clips(data)
    if not clips:
        sys.exit(f"no English asr clips under 30 s in {data / 'manifest.jsonl'}")
    samples = [load_audio(p).samples for p, _ in clips]
    refs = [r for _, r in clips]
    durations = [len(s) / SAMPLE_RATE for s in samples]
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), np.float32)
    pcm = [pcm24(np.concatenate([s, gap])) for s in samples]

    settings = Settings.load(result_cache={"memory_items": 0}, server={"live_streams": max(16, max(args.streams))})
    print(f"# harken realtime benchmark — {settings.default_model} int8, CPU ({os.cpu_count()} cores), "
          f"OpenAI Realtime socket, server_vad (silence {SILENCE_MS} ms)")
    print(f"# {len(clips)} English clips ({statistics.mean(durations):.1f} s mean) from {data}; "
          f"~{args.seconds:g} s of audio per stream, each clip then {GAP_S:g} s of silence, "
          f"real-time pace in {CHUNK_S * 1000:.0f} ms chunks")
    print("# figures are wall-clock on this machine; the client and the server (one process) share its cores\n")

    # Offline transcription of every clip, by harken, before the server runs (none of it cached).
    service = Service(settings)
    t = time.perf_counter()
    offline = [service.transcribe(p, use_cache=False).text for p, _ in clips]
    offline_s = time.perf_counter() - t
    service.close()
    del service
    print(f"offline transcription of the {len(clips)} clips ({sum(durations):.0f} s): {offline_s:.1f} s; "
          f"its WER against the references: {wer([' '.join(refs)], [' '.join(offline)]):.3f}\n")

    errors_seen, lost_seen, best = [], [], 0
    app = create_app(settings)
    state = app.state.harken
    with live_server(settings, app) as url:
        # Warm-up: one clip through a socket, unpaced, so the first level pays no first-call costs.
        warm = Stream([0], audio=pcm[0])
        asyncio.run(run_level(url, [warm], args.grace, paced=False))
        wait_idle(state)
        if warm.errors or not warm.text():
            print(f"warm-up stream: no transcript ({warm.errors or 'no errors'})")

        header = (f"{'streams':>7}{'utts':>6}{'final p50':>11}{'p95 ms':>8}{'1st part p50':>14}{'p95 ms':>8}"
                  f"{'partial':>9}{'WER/offl':>10}{'WER/ref':>9}{'lag max s':>11}{'keep up':>9}{'late ms':>9}{'drain s':>9}{'lost':>6}{'errors':>8}")
        print("## live streams (final: after the speech ends, the 500 ms silence included; "
              f"1st partial: utterances > {LONG_UTTERANCE_S:g} s, from their first audio, prefix padding included)")
        print(header)
        for n in args.streams:
            streams = []
            for order in plan(len(clips), durations, n, args.seconds):
                streams.append(Stream(order, audio=b"".join(pcm[i] for i in order)))
            asyncio.run(run_level(url, streams, args.grace))
            drain = wait_idle(state)
            finals, partials, long_items, with_partial = [], [], 0, 0
            for s in streams:
                for item in s.items.values():
                    if item.start_ms is None or item.end_ms is None:
                        continue
                    speech_end = max(item.start_ms, item.end_ms - SILENCE_MS)
                    if item.completed_at is not None:
                        finals.append(item.completed_at - s.sent_at(speech_end))
                    if (speech_end - item.start_ms) / 1000 > LONG_UTTERANCE_S:
                        long_items += 1
                        if item.first_delta_at is not None:
                            partials.append(item.first_delta_at - s.sent_at(item.start_ms))
                            with_partial += item.committed_at is None or item.first_delta_at < item.committed_at
            streamed = [s.text() for s in streams]
            w_off = wer([" ".join(offline[i] for i in s.clips) for s in streams], streamed)
            w_ref = wer([" ".join(refs[i] for i in s.clips) for s in streams], streamed)
            lag = max(s.lag for s in streams)
            keeps = all(s.keeps_up for s in streams)
            best = n if keeps and n > best else best
            errors = sum(len(s.errors) for s in streams)
            errors_seen += [(n, e) for s in streams for e in s.errors]
            timeouts = sum(s.timed_out for s in streams)
            lost = sum(len(s.lost()) for s in streams)
            lost_seen += [(n, k, i, s.items[i].start_ms) for k, s in enumerate(streams) for i in s.lost()]
            kept = sum(s.keeps_up for s in streams)
            utts = sum(1 for s in streams for it in s.items.values() if it.completed_at is not None)
            if args.items:
                for k, st in enumerate(streams):
                    show_items(k, st)
            print(f"{n:>7}{utts:>6}{ms(statistics.median(finals) if finals else math.nan):>11}{ms(pct(finals, 95)):>8}"
                  f"{ms(statistics.median(partials) if partials else math.nan):>14}{ms(pct(partials, 95)):>8}"
                  f"{f'{with_partial}/{long_items}':>9}{w_off:10.3f}{w_ref:9.3f}{lag:11.2f}"
                  f"{f'{kept}/{n}':>9}{max(s.late for s in streams) * 1000:9.0f}{drain:9.1f}{lost:6d}{errors:8d}"
                  + (f"  ({timeouts} timed out)" if timeouts else ""))
        print(f"\nthe most streams that keep up (every stream's last final within {KEEP_UP_S:g} s of its last audio, "
              f"all items completed): {best if best else 'none'}")
        print("(partial: utterances over 3 s with a delta before their commit; late: the sender's worst lateness "
              "against its schedule; drain: from the clients' end until the server had no live stream open; lost: items started and never committed; WER/offl: against harken's offline transcription of the same clips)")
        if lost_seen:
            print(f"\nlost items ({len(lost_seen)}): speech_started, then another item started with no "
                  "speech_stopped, committed or completed for this one (its audio gets no transcript):")
            for n, k, i, at in lost_seen[:20]:
                print(f"  [{n} streams] stream {k}: {i}, audio_start_ms {at}")
        if errors_seen:
            print(f"\nerrors ({len(errors_seen)}):")
            for n, e in errors_seen[:20]:
                print(f"  [{n} streams] {e}")

        if args.file_seconds > 0:
            parts, total, i = [], 0, 0
            while total < args.file_seconds * SAMPLE_RATE:
                parts.append(samples[i % len(samples)])
                total += len(parts[-1])
                i += 1
            long_audio = np.concatenate(parts)[: int(args.file_seconds * SAMPLE_RATE)]
            wav = encode(long_audio, SAMPLE_RATE, get_speech_format("wav"))
            first, done, text, deltas = file_stream(url, wav)
            print(f"\n## file streaming: a {len(long_audio) / SAMPLE_RATE:.0f} s WAV, POST /v1/audio/transcriptions stream=true")
            print(f"first transcript.text.delta: {first:.2f} s; transcript.text.done: {done:.2f} s; "
                  f"first/total: {first / done:.2f}; {deltas} deltas, {len(text.split())} words")


if __name__ == "__main__":
    main()
