"""Coverage-guided atheris fuzz target for harken.audio.decode.decode_audio.

Contract under test: for ANY bytes, decode_audio either returns an Audio or raises a subclass of
harken.errors.AudioError. Anything else (another exception, a failed check on the result, a hang,
runaway memory, a segfault) is reported by libFuzzer as a finding.

    python fuzz/decode_fuzz.py fuzz/corpus -max_total_time=300 -rss_limit_mb=4096 -timeout=20
    python fuzz/decode_fuzz.py crash-<sha1>        # reproduce one input

Set HARKEN_FUZZ_COLLECT=DIR to keep fuzzing past Python-level findings: each distinct one
(exception type + where it was raised) is saved once to DIR and printed, instead of stopping.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import traceback

import atheris

with atheris.instrument_imports():
    from harken.audio import RawAudio
    from harken.audio.decode import SAMPLE_RATE, decode_audio
    from harken.errors import AudioError

import numpy as np

MAX_DURATION = 60.0
_COLLECT = os.environ.get("HARKEN_FUZZ_COLLECT")
_seen: set[str] = set()


def check(data: bytes) -> None:
    raw = RawAudio(data, hashlib.sha256(data).hexdigest(), "fuzz")
    try:
        audio = decode_audio(raw, max_duration=MAX_DURATION)
    except AudioError:
        return
    s = audio.samples
    assert isinstance(s, np.ndarray), f"samples is a {type(s).__name__}"
    assert s.dtype == np.float32, f"samples dtype is {s.dtype}"
    assert s.ndim == 1, f"samples shape is {s.shape}"
    assert s.size > 0, "an Audio with no samples (should be EmptyAudioError)"
    assert np.isfinite(s).all(), f"{int((~np.isfinite(s)).sum())} non-finite samples"
    assert float(s.min()) >= -1.0 and float(s.max()) <= 1.0, f"samples outside [-1, 1]: {s.min()}..{s.max()}"
    assert math.isfinite(audio.duration) and audio.duration <= MAX_DURATION, f"duration {audio.duration} s"
    assert abs(audio.duration - s.size / SAMPLE_RATE) < 1e-9
    assert audio.source_rate > 0 and audio.source_channels > 0, (audio.source_rate, audio.source_channels)


def _signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    last = frames[-1] if frames else None
    ours = [f for f in frames if "/harken/" in f.filename]
    at = lambda f: f"{os.path.basename(f.filename)}:{f.lineno}" if f else "?"  # noqa: E731
    return f"{type(exc).__name__}@{at(ours[-1] if ours else None)}@{at(last)}"


def TestOneInput(data: bytes) -> None:
    if not _COLLECT:
        check(data)
        return
    try:
        check(data)
    except Exception as exc:  # noqa: BLE001 - collecting mode: record, then keep fuzzing
        sig = _signature(exc)
        if sig in _seen:
            return
        _seen.add(sig)
        os.makedirs(_COLLECT, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "._-@" else "_" for c in sig)
        path = os.path.join(_COLLECT, f"finding-{safe}-{hashlib.sha1(data).hexdigest()[:12]}")
        with open(path, "wb") as f:
            f.write(data)
        with open(path + ".txt", "w") as f:
            f.write(f"{sig}\n{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
        print(f"\n=== NEW FINDING {sig}: {type(exc).__name__}: {str(exc)[:200]} -> {path}", file=sys.stderr, flush=True)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
