"""Where harken's time goes on long audio: encoder passes, batched beam searches, resumes,
repairs and windows sampled again for a repeat, on the joins of benchmarks/asr.py.

    python benchmarks/longform_profile.py [--seeds 0 1 2] [--minutes 10]

Wraps the real calls (faster-whisper's WhisperModel.encode and generate_with_fallback, the
window decoder's batched first decodings) to count them and add up their time; times are
thread-seconds, summed over harken's workers. Prints WER and wall time per join too.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import faster_whisper.transcribe as fwt  # noqa: E402

import harken.engines.whisper_longform as longform  # noqa: E402
import harken.engines.whisper_window as window  # noqa: E402
import harken.engines.window_checks as checks  # noqa: E402
from benchmarks.asr import english_clips, join  # noqa: E402
from harken import Service, Settings  # noqa: E402
from harken.audio import SAMPLE_RATE, Audio, load_audio  # noqa: E402
from tests.wer import wer  # noqa: E402

CALLS: collections.Counter = collections.Counter()
SECONDS: collections.Counter = collections.Counter()
LOCK = threading.Lock()


def timed(owner, name: str, label: str) -> None:
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = original(*args, **kwargs)
        with LOCK:
            CALLS[label] += 1
            SECONDS[label] += time.perf_counter() - start
        return out

    setattr(owner, name, wrapper)


def counted_batches() -> None:
    original = longform._Decoding._next

    def wrapper(self, queue, workers):
        jobs = original(self, queue, workers)
        kind = "first decodings" if jobs[0].first else "repair parts"
        with LOCK:
            CALLS[f"jobs of {kind}"] += 1
            CALLS[f"windows in {kind}"] += len(jobs)
        return jobs

    longform._Decoding._next = wrapper


def sampled_again() -> None:
    """Time the windows flagged for a repeated phrase, sampled again on their encoder output."""
    original = longform._Run._unrepeated

    def wrapper(self, decoded, again):
        start = time.perf_counter()
        out = original(self, decoded, again)
        if checks.repeated_phrase(decoded.text) and self.options.temperature == 0.0:
            with LOCK:
                CALLS["windows sampled again (a repeat)"] += 1
                SECONDS["windows sampled again (a repeat)"] += time.perf_counter() - start
        return out

    longform._Run._unrepeated = wrapper


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    timed(fwt.WhisperModel, "encode", "encoder passes")
    timed(fwt.WhisperModel, "generate_with_fallback", "single decodings (resumes, fallbacks)")
    timed(window, "_first_decodings", "batched first decodings")
    timed(longform._Run, "_decode", "faster-whisper path (short clips)")
    sampled_again()
    counted_batches()
    clips = [(load_audio(p).samples, r) for p, r in english_clips(args.data)]
    service = Service(Settings.load(result_cache={"memory_items": 0}))
    service.transcribe(Audio(clips[0][0], "warm", SAMPLE_RATE, 1, "raw"), use_cache=False)
    for seed in args.seeds:
        audio, reference = join(clips, args.minutes * 60, seed=seed)
        CALLS.clear()
        SECONDS.clear()
        start = time.perf_counter()
        text = service.transcribe(Audio(audio, "join", SAMPLE_RATE, 1, "raw"), beam_size=5, use_cache=False).text
        wall = time.perf_counter() - start
        print(f"join {seed}: {len(audio) / SAMPLE_RATE / 60:.1f} min, WER {wer([reference], [text]):.3f}, {wall:.1f} s")
        for label in sorted(CALLS):
            spent = f"{SECONDS[label]:7.1f} s" if label in SECONDS else ""
            print(f"  {label:<42}{CALLS[label]:5d} {spent}")


if __name__ == "__main__":
    main()
