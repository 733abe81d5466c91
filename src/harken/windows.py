"""Long audio for audio-language models: answer per window, then merge or aggregate.

A model sees at most its window (30 s unless configured). A longer clip is cut at silences
into windows no longer than that (audio/segment.py, the same cutter the Whisper path uses).
ask and caption answer each window, then one text-only turn on the same model merges the
answers, each labelled with its time range. analyze answers each window under the schema and
aggregates field by field: the value covering the most audio wins (the median for numbers), so
the aggregate is always one of the valid answers' values and still validates. Windows run one
after another, so memory stays flat however long the clip.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from harken.audio import Audio
from harken.audio.segment import plan_pieces
from harken.engines.chat import AudioPart, TextPart
from harken.results import ChatResult, Timings, WindowAnswer

__all__ = ["map_reduce", "aggregate"]

Turn = Callable[[tuple[AudioPart | TextPart, ...]], ChatResult]


def map_reduce(
    audio: Audio, window_s: float, task: str, prompt: str | None, schema: dict[str, Any] | None,
    turn: Turn, merge: Callable[[str], ChatResult], start: float,
) -> ChatResult:
    answers: list[tuple[float, float, ChatResult]] = []
    for piece in plan_pieces(audio.samples, max_len=window_s):
        part = AudioPart(piece.slice(audio.samples), f"{audio.sha256}:{piece.start:.3f}-{piece.end:.3f}")
        note = f"(This is {_clock(piece.start)}-{_clock(piece.end)} of a {_clock(audio.duration)} recording.)"
        parts = (part,) if prompt is None else (part, TextPart(f"{prompt}\n{note}" if schema is None else prompt))
        answers.append((piece.start, piece.end, turn(parts)))
    windows = tuple(WindowAnswer(round(a, 3), round(b, 3), r.text, r.result) for a, b, r in answers)
    results = [r for _, _, r in answers]
    if schema is not None:
        result = aggregate([(b - a, r.result or {}) for a, b, r in answers], schema)
        text, finish, extra = json.dumps(result), "stop", []
    else:
        merged = merge(_merge_prompt(task, prompt, answers))
        result, text, finish, extra = None, merged.text, merged.finish_reason, [merged]
    done = time.perf_counter()
    spent = results + extra
    return ChatResult(
        text=text,
        model=results[0].model,
        task=task,
        finish_reason=finish,
        prompt_tokens=sum(r.prompt_tokens for r in spent),
        completion_tokens=sum(r.completion_tokens for r in spent),
        timings=Timings(0.0, sum(r.timings.inference_s for r in spent), done - start, audio.duration,
                        cache_hit=all(r.timings.cache_hit for r in spent)),
        result=result,
        audio_sha256=(audio.sha256,),
        windows=windows,
    )


def aggregate(weighted: list[tuple[float, dict[str, Any]]], schema: dict[str, Any]) -> dict[str, Any]:
    """Field by field: the value that covers the most seconds; for numbers, the weighted median."""
    keys: list[str] = []
    for _, answer in weighted:
        keys += [k for k in answer if k not in keys]
    out: dict[str, Any] = {}
    for key in keys:
        votes = [(w, a[key]) for w, a in weighted if key in a]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for _, v in votes):
            ordered = sorted(votes, key=lambda wv: wv[1])
            half, seen = sum(w for w, _ in votes) / 2, 0.0
            for w, v in ordered:
                seen += w
                if seen >= half:
                    out[key] = v
                    break
        else:
            tally: dict[str, float] = defaultdict(float)
            for w, v in votes:
                tally[json.dumps(v, sort_keys=True)] += w
            out[key] = json.loads(max(tally, key=tally.get))
    return out


def _merge_prompt(task: str, prompt: str | None, answers: list[tuple[float, float, ChatResult]]) -> str:
    listed = "\n".join(f"[{_clock(a)}-{_clock(b)}] {r.text.strip()}" for a, b, r in answers)
    goal = "one description of the whole recording" if task == "caption" else f"one answer to: {prompt}"
    return f"These are answers about consecutive parts of one recording:\n{listed}\nCombine them into {goal}"


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"
