"""Long audio in other languages: the FLEURS clips of each language in ../shared/data joined
into one recording (about a minute), harken against faster-whisper's sequential long-form
decoding on the same model (whisper-base, language detected, beam 5).

    python benchmarks/multilingual_joins.py [--data ../shared/data] [--orders 5]

Five clips a language: a change of a few words moves WER by 0.02, so read it per language and
alongside benchmarks/asr.py, never alone. With `--orders N` each language is also joined in
N-1 shuffled orders and the mean over all N is printed: which side a language falls on in one
order can be the order's doing (German: harken behind by three words in the first order, ahead
or level in the other four).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from harken import Service, Settings  # noqa: E402
from harken.audio import SAMPLE_RATE, Audio  # noqa: E402
from tests.wer import wer  # noqa: E402
from benchmarks.devsets import load_subsets  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--orders", type=int, default=1, help="join orders per language (the first is the manifest's)")
    args = parser.parse_args()
    from faster_whisper import WhisperModel

    clips = [c for s in load_subsets(args.data) if s.name == "multilingual" for c in s.clips]
    service = Service(Settings.load(result_cache={"memory_items": 0}))
    path = service.registry.resolve("whisper-base").source.resolve(service.settings.cache_dir)
    fw = WhisperModel(str(path), device="cpu", compute_type="int8")
    print("# FLEURS clips of one language joined; whisper-base int8, beam 5, language detected")
    print(f"{'language':<10}{'order':>6}{'secs':>6}{'fw WER':>8}{'harken':>8}{'fw time':>9}{'time':>8}  detected")
    for language in sorted({c.language for c in clips}):
        mine = [c for c in clips if c.language == language]
        scores = []
        for order in range(args.orders):
            picked = np.random.default_rng(order).permutation(len(mine)) if order else range(len(mine))
            scores.append(_one(fw, service, language, order, [mine[i] for i in picked]))
        if args.orders > 1:
            fw_mean, h_mean = np.mean(scores, axis=0)
            print(f"{language:<10}{'mean':>6}{'':>6}{fw_mean:8.3f}{h_mean:8.3f}")


def _one(fw, service, language: str, order: int, clips) -> tuple[float, float]:
    """One join of a language's clips: faster-whisper's and harken's WER, printed as a row."""
    audio = np.concatenate([c.samples for c in clips])
    reference = " ".join(c.reference for c in clips)
    start = time.perf_counter()
    plain = " ".join(s.text for s in fw.transcribe(audio, beam_size=5)[0])
    t_fw = time.perf_counter() - start
    start = time.perf_counter()
    heard = service.transcribe(Audio(audio, language, SAMPLE_RATE, 1, "raw"), model="whisper-base", beam_size=5,
                               use_cache=False)
    t_h = time.perf_counter() - start
    scores = wer([reference], [plain], "basic"), wer([reference], [heard.text], "basic")
    print(f"{language:<10}{order:>6}{len(audio) / SAMPLE_RATE:6.0f}{scores[0]:8.3f}{scores[1]:8.3f}{t_fw:8.1f}s{t_h:7.1f}s"
          f"  {heard.language}")
    return scores


if __name__ == "__main__":
    main()
