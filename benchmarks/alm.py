"""Audio-language model benchmark on a tiny random checkpoint (no real ALM weights exist here).

    python benchmarks/alm.py [--family qwen2-audio] [--lengths 30,120,300,600]

Prints, in one run:
- generation speed (tokens/s) unconstrained, and constrained to the `tone` JSON schema with
  xgrammar: the per-token overhead of the grammar;
- peak memory (RSS of a fresh process) of `analyze`, and of a chat completion, against audio
  length, 30 s to 10 min, which the window-by-window path keeps flat.
With random weights the figures measure harken's plumbing and the grammar, not a real model's
speed; run it with `--model DIR` on a real checkpoint for that.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_CHILD = """
import json, resource, sys, time
import numpy as np
import harken
from harken import Service, Settings
from harken.audio import Audio
from harken.engines.chat import AudioPart, ChatMessage, TextPart
model, seconds, task = sys.argv[1], float(sys.argv[2]), sys.argv[4]
clip = harken.load_audio(sys.argv[3]).samples
samples = np.tile(clip, int(seconds * 16000 // len(clip)) + 1)[: int(seconds * 16000)]
service = Service(Settings.load(result_cache={"memory_items": 0}))
start = time.perf_counter()
if task == "analyze":
    result = service.analyze(Audio(samples, "bench-%d" % seconds, 16000, 1, "raw"), "tone", model=model, temperature=1.0, seed=0)
else:
    asked = [ChatMessage("user", (AudioPart(samples, "bench-%d" % seconds), TextPart("What is said?")))]
    result = service.chat(asked, model=model, max_new_tokens=16)
print(json.dumps({"s": time.perf_counter() - start, "windows": len(result.windows) or 1,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", default="qwen2-audio")
    parser.add_argument("--model", help="a real checkpoint directory instead of the tiny random one")
    parser.add_argument("--lengths", default="30,120,300,600")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from harken import Service, Settings
    from tests.tiny_alm import BUILDERS

    model = args.model or str(BUILDERS[args.family](Path(tempfile.mkdtemp()) / args.family))
    clip = ROOT / "tests" / "data" / "jfk.flac"
    service = Service(Settings.load(result_cache={"memory_items": 0}))
    service.ask(clip, "warm up", model=model, max_new_tokens=2)
    print(f"# harken ALM benchmark — {'tiny random ' + args.family if not args.model else model}, CPU\n")

    def rate(fn) -> tuple[float, float]:
        tokens, seconds = 0, 0.0
        for seed in range(args.runs):
            result = fn(seed)
            tokens += result.completion_tokens
            seconds += result.timings.inference_s
        return tokens / seconds, seconds / tokens * 1000

    free, free_ms = rate(lambda seed: service.ask(clip, "Describe the speaker.", model=model, max_new_tokens=64,
                                                  temperature=1.0, seed=seed))
    tone, tone_ms = rate(lambda seed: service.analyze(clip, "tone", model=model, temperature=1.0, seed=seed))
    print(f"{'11 s clip, sampling at T=1':<40}{'tokens/s':>10}{'ms/token':>10}")
    print(f"{'unconstrained (ask)':<40}{free:10.1f}{free_ms:10.2f}")
    print(f"{'constrained to the tone schema':<40}{tone:10.1f}{tone_ms:10.2f}")
    print(f"grammar overhead per token: {tone_ms - free_ms:+.2f} ms ({(tone_ms / free_ms - 1) * 100:+.0f} %)\n")

    for task in ("analyze", "chat"):
        print(f"{task + ', audio length':<24}{'windows':>8}{'time':>9}{'peak RSS':>11}")
        for seconds in [float(x) for x in args.lengths.split(",")]:
            out = subprocess.run([sys.executable, "-c", _CHILD, model, str(seconds), str(clip), task],
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{seconds:>20.0f} s{row['windows']:>10d}{row['s']:8.1f}s{row['rss_mb']:9.0f} MB")
        print()


if __name__ == "__main__":
    main()
