"""Long audio in other languages: the FLEURS clips of each language in ../shared/data joined
into one recording (about a minute), harken against faster-whisper's sequential long-form
decoding on the same model (whisper-base, language detected, beam 5).

    python benchmarks/multilingual_joins.py [--data ../shared/data]

Five clips a language: a change of a few words moves WER by 0.02, so read it per language and
alongside benchmarks/asr.py, never alone.
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
    args = parser.parse_args()
    from faster_whisper import WhisperModel

    clips = [c for s in load_subsets(args.data) if s.name == "multilingual" for c in s.clips]
    service = Service(Settings.load(result_cache={"memory_items": 0}))
    path = service.registry.resolve("whisper-base").source.resolve(service.settings.cache_dir)
    fw = WhisperModel(str(path), device="cpu", compute_type="int8")
    print("# FLEURS clips of one language joined; whisper-base int8, beam 5, language detected")
    print(f"{'language':<10}{'secs':>6}{'fw WER':>8}{'harken':>8}{'fw time':>9}{'time':>8}  detected")
    for language in sorted({c.language for c in clips}):
        mine = [c for c in clips if c.language == language]
        audio = np.concatenate([c.samples for c in mine])
        reference = " ".join(c.reference for c in mine)
        start = time.perf_counter()
        plain = " ".join(s.text for s in fw.transcribe(audio, beam_size=5)[0])
        t_fw = time.perf_counter() - start
        start = time.perf_counter()
        heard = service.transcribe(Audio(audio, language, SAMPLE_RATE, 1, "raw"), model="whisper-base", beam_size=5,
                                   use_cache=False)
        t_h = time.perf_counter() - start
        print(f"{language:<10}{len(audio) / SAMPLE_RATE:6.0f}{wer([reference], [plain], 'basic'):8.3f}"
              f"{wer([reference], [heard.text], 'basic'):8.3f}{t_fw:8.1f}s{t_h:7.1f}s  {heard.language}")


if __name__ == "__main__":
    main()
