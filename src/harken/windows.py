"""Long audio for audio-language models: answer per window, then merge or aggregate.

A model sees at most its window (30 s unless configured, shorter where a remote upstream's
context cannot hold it). A longer clip is cut at silences into windows no longer than that
(audio/segment.py, the same cutter the Whisper path uses). Each window is answered on its own;
then one text-only turn on the same model merges the answers, each labelled with its time range.
Under a JSON schema the answers are aggregated field by field instead: the value covering the
most audio wins (the median for numbers), so the aggregate is always one of the valid answers'
values and still validates. Windows run one after another, so memory stays flat however long
the clip. ask, caption, analyze and chat completions all come through here.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from harken.audio import Audio
from harken.audio.segment import plan_pieces
from harken.engines.chat import AudioPart, ChatOptions
from harken.results import ChatResult, Timings, WindowAnswer

__all__ = ["map_reduce", "aggregate", "window_of", "Cancelled"]

# A window's audio and where it lies ("(This is 0:30-1:00 of a 1:40 recording.)") -> its answer.
Answer = Callable[[AudioPart, str], ChatResult]


class Cancelled(Exception):
    """The caller gave up (a client hung up) between two windows."""


def window_of(engine: Any, options: ChatOptions) -> float:
    """The engine's window for this request: a remote upstream's context may make it shorter."""
    fit = getattr(engine, "window_for", None)
    return fit(options) if fit is not None else float(getattr(engine, "window_s", 30.0))


def map_reduce(
    audio: Audio, window_s: float, task: str, question: str | None, schema: dict[str, Any] | None,
    answer: Answer, merge: Callable[[str], ChatResult], start: float, cancelled: threading.Event | None = None,
) -> ChatResult:
    answers: list[tuple[float, float, ChatResult]] = []
    for piece in plan_pieces(audio.samples, max_len=window_s):
        if cancelled is not None and cancelled.is_set():
            raise Cancelled
        part = AudioPart(piece.slice(audio.samples), f"{audio.sha256}:{piece.start:.3f}-{piece.end:.3f}")
        note = f"(This is {_clock(piece.start)}-{_clock(piece.end)} of a {_clock(audio.duration)} recording.)"
        answers.append((piece.start, piece.end, answer(part, note)))
    windows = tuple(WindowAnswer(round(a, 3), round(b, 3), r.text, _parsed(r) if schema is not None else None)
                    for a, b, r in answers)
    results = [r for _, _, r in answers]
    extra: list[ChatResult] = []
    if schema is not None:
        complete = [(w.end - w.start, w.result) for w in windows if w.result is not None]
        if complete:
            result = aggregate(complete, schema)
            # A window cut short is left out of the aggregate; "length" says so.
            text, finish = json.dumps(result), "stop" if len(complete) == len(windows) else "length"
        else:  # every answer cut at max_tokens: what the model said, as for a short clip
            result, text, finish = None, windows[0].text, "length"
    else:
        if cancelled is not None and cancelled.is_set():
            raise Cancelled
        merged = merge(_merge_prompt(task, question, answers))
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


def _parsed(r: ChatResult) -> dict[str, Any] | None:
    """A window's JSON object; None when the answer was cut before it was complete."""
    if r.result is not None:
        return r.result
    try:
        value = json.loads(r.text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


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


def _merge_prompt(task: str, question: str | None, answers: list[tuple[float, float, ChatResult]]) -> str:
    listed = "\n".join(f"[{_clock(a)}-{_clock(b)}] {r.text.strip()}" for a, b, r in answers)
    if task == "caption" or not question:
        goal = "one description of the whole recording" if task == "caption" else "one answer about the whole recording"
    else:
        goal = f"one answer to: {question}"
    return f"These are answers about consecutive parts of one recording:\n{listed}\nCombine them into {goal}"


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"
