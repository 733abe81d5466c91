"""Decompression bomb: FLAC of stereo 48 kHz silence whose STREAMINFO declares no length.

    python benchmarks/decode_bomb.py [--hours 2]

Prints time and peak memory (each decode in a fresh process) for:
- faster-whisper's decode_audio on the file (the baseline: it decodes everything);
- harken's decoder with the default limit (max_audio_s 4 h: the audio is accepted);
- harken's decoder with a 1 h limit and with a 10 min limit (stopped at the limit, 413);
- the same file posted to `harken serve` with a 10 min limit (decoded in a child process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile import flac_without_length  # noqa: E402
from tests.live_server import free_port, wait_until_ready  # noqa: E402

_CHILD = """
import json, resource, sys, time
path, how, limit = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(path, "rb").read()
start = time.perf_counter()
outcome = "ok"
try:
    if how == "faster-whisper":
        from faster_whisper.audio import decode_audio
        import io
        decode_audio(io.BytesIO(data))
    else:
        from harken.audio import RawAudio, decode_audio
        decode_audio(RawAudio(data, "", "bomb.flac"), max_duration=float(limit))
except Exception as exc:
    outcome = type(exc).__name__
print(json.dumps({"s": time.perf_counter() - start, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "outcome": outcome}))
"""


def in_process(path: Path, how: str, limit: float) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), how, str(limit)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def via_server(path: Path, limit: float) -> dict:
    port = free_port()
    env = {**os.environ, "HARKEN_MAX_AUDIO_S": str(limit), "HARKEN_CACHE_DIR": tempfile.mkdtemp(prefix="harken-bomb-")}
    proc = subprocess.Popen([sys.executable, "-m", "harken", "serve", "--port", str(port), "--log-level", "warning"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, lambda: proc.poll() is None)
        before = _rss(proc.pid)
        start = time.perf_counter()
        response = httpx.post(url + "/v1/audio/transcriptions", files={"file": ("bomb.flac", path.read_bytes())}, timeout=600)
        seconds = time.perf_counter() - start
        return {"s": seconds, "status": response.status_code, "server_rss_growth_mb": _rss(proc.pid) - before,
                "alive": httpx.get(url + "/healthz").status_code == 200}
    finally:
        proc.terminate()
        proc.wait(30)


def _rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bomb.flac"
        path.write_bytes(flac_without_length(args.hours * 3600))
        print(f"bomb: {path.stat().st_size / 1e6:.2f} MB of FLAC, {args.hours:g} h of 48 kHz stereo, no declared length\n")
        print(f"{'decoder':34s} {'limit':>8s} {'time s':>8s} {'peak MB':>9s}  outcome")
        rows = [("faster-whisper decode_audio", "faster-whisper", 0, "none")]
        rows += [("harken decode_audio", "harken", limit, label) for limit, label in
                 ((4 * 3600, "4 h"), (3600, "1 h"), (600, "10 min"))]
        for name, how, limit, label in rows:
            r = in_process(path, how, limit)
            print(f"{name:34s} {label:>8s} {r['s']:8.1f} {r['peak_mb']:9.0f}  {r['outcome']}")
        r = via_server(path, 600)
        print(f"\nharken serve, 10 min limit: HTTP {r['status']} in {r['s']:.1f} s; server RSS "
              f"{r['server_rss_growth_mb']:+.0f} MB (decoding happened in a child process); still up: {r['alive']}")


if __name__ == "__main__":
    main()
