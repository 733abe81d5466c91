"""harken alone on every long development recording, one line a run: the three 11.9 min joins
of benchmarks/asr.py (WER, seconds), the English subsets' clips joined in two orders with 0.3 s
pauses (WER, seconds) and the six AMI meetings joined (words, seconds; they have no word
reference). For comparing two trees in turns on one machine, where the machine's drift
between runs is larger than most changes:

    python benchmarks/long_recordings.py            # this tree's code
    python ../other-tree/benchmarks/long_recordings.py --data ../shared/data   # that tree's code
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# This tree's harken, not the one the environment has installed (an editable install points at
# one tree): comparing two trees in turns needs each to run its own code.
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from benchmarks.asr import english_clips, join  # noqa: E402
from benchmarks.devsets import load_meetings, load_subsets  # noqa: E402
from harken import Service, Settings  # noqa: E402
from harken.audio import SAMPLE_RATE, Audio, load_audio  # noqa: E402
from tests.wer import wer  # noqa: E402


def recordings(data: Path) -> list[tuple[str, np.ndarray, str | None]]:
    clips = [(load_audio(p).samples, r) for p, r in english_clips(data)]
    found: list[tuple[str, np.ndarray, str | None]] = [(f"join{s}", *join(clips, 600, seed=s)) for s in (0, 1, 2)]
    mixed = [c for s in load_subsets(data) if s.model == "whisper-tiny.en" and s.name != "long-read" for c in s.clips]
    pause = np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)
    for seed in (0, 1):
        order = np.random.default_rng(seed).permutation(len(mixed))
        found.append((f"mixed{seed}", np.concatenate([x for i in order for x in (mixed[i].samples, pause)]),
                      " ".join(mixed[i].reference for i in order)))
    meetings = load_meetings(data)
    if meetings:
        found.append(("meetings", np.concatenate([m.samples for m in meetings]), None))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    service = Service(Settings.load(result_cache={"memory_items": 0}))
    found = recordings(args.data)
    service.transcribe(Audio(found[0][1][: 10 * SAMPLE_RATE], "warm", SAMPLE_RATE, 1, "raw"), use_cache=False)
    row = []
    for name, samples, reference in found:
        start = time.perf_counter()
        text = service.transcribe(Audio(samples, name, SAMPLE_RATE, 1, "raw"), beam_size=5, use_cache=False).text
        seconds = time.perf_counter() - start
        score = f"WER {wer([reference], [text]):.3f}" if reference else f"{len(text.split())} words"
        row.append(f"{name} {score} {seconds:.2f} s")
    print(" | ".join(row), flush=True)


if __name__ == "__main__":
    main()
