"""Schema-driven fuzzing of harken's HTTP API: schemathesis against a real server.

    python fuzz/api_fuzz.py                       # 100 fuzzing examples per operation, every phase (~2 min)
    python fuzz/api_fuzz.py --seed 1 --max-examples 20
    python fuzz/api_fuzz.py --max-time 1800       # keep fuzzing until half an hour is spent
    python fuzz/api_fuzz.py --alm                 # chat completions on a tiny random ALM too (~7 min)
    python fuzz/api_fuzz.py -- --include-path /transcribe --report junit   # after --: for `st run`

It serves harken on a free 127.0.0.1 port (tests/live_server.py: uvicorn in a thread; a temporary cache directory,
one allowed media root holding a copy of tests/data/jfk.flac and a one-clip evaluation set, no
allowed URL domains), then runs `st run` on its /openapi.json with the checks in CHECKS and
prints schemathesis's report, then how each operation answered (status and error code, from
st's ndjson report). The exit status is st's: 0 when every check held.

Schemathesis generates the values, this file makes them land: parameter dictionaries give
catalogue model names, voices, the media root's paths (and ones it must refuse), inline audio, a
good share of the time, and a hook uploads a real 3 s mp3 for a share of the transcription and
translation cases. The same pieces serve tests/test_api_fuzz.py, the short pass CI runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
JFK = REPO / "tests" / "data" / "jfk.flac"
JFK_TEXT = "And so my fellow Americans ask not what your country can do for you, ask what you can do for your country."

# What every response must satisfy. unsupported_method and allow_header_conformance act on the
# coverage phase's requests with methods the schema does not declare: 405, with an Allow header
# that lists exactly the declared ones.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "unsupported_method",
    "allow_header_conformance",
)

# Set for the `st` process: the clip the upload hook sends (the hook runs in that process).
UPLOAD_ENV = "API_FUZZ_UPLOAD"


# --- the server's data ---------------------------------------------------------------------------


def prepare(root: Path) -> Path:
    """An allowed media root under `root`: jfk.flac, eval/audio/jfk.flac with its label in
    eval/labels/jfk.txt, and upload.mp3 (the clip's first 3 s: a small real upload). Returns it."""
    media = root / "media"
    (media / "eval" / "audio").mkdir(parents=True, exist_ok=True)
    (media / "eval" / "labels").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(JFK, media / "jfk.flac")
    shutil.copyfile(JFK, media / "eval" / "audio" / "jfk.flac")
    (media / "eval" / "labels" / "jfk.txt").write_text(JFK_TEXT + "\n")
    (media / "upload.mp3").write_bytes(short_clip(JFK, seconds=3.0))
    return media


def short_clip(path: Path, *, seconds: float) -> bytes:
    """The first `seconds` of `path` as mp3: about 3 kB a second, so failure reports stay short."""
    from harken.audio import SAMPLE_RATE, load_audio
    from harken.audio.encode import SPEECH_FORMATS, encode

    return encode(load_audio(path).samples[: int(seconds * SAMPLE_RATE)], SAMPLE_RATE, SPEECH_FORMATS["mp3"])


def settings(root: Path, media: Path, *, alm: Path | None = None, **overrides):
    """The server's settings: its cache under `root`, `media` the one allowed root, no URL hosts;
    `alm`, a checkpoint served as the model "omni" (the name the chat examples use)."""
    from harken import Settings

    server = {"request_timeout_s": 60.0, **overrides.pop("server", {})}
    if alm is not None:
        overrides["models"] = {"omni": {"engine": "alm", "source": str(alm)}, **overrides.get("models", {})}
    return Settings.load(cache_dir=root / "cache", allowed_media_roots=[media], allowed_url_domains=[],
                         server=server, **overrides)


def tiny_alm(root: Path) -> Path:
    """A tiny random Qwen2-Audio checkpoint (tests/tiny_alm.py; needs torch and transformers):
    answers are noise, but every chat path runs for real."""
    sys.path.insert(0, str(REPO))
    from tests.tiny_alm import build_qwen2_audio

    return build_qwen2_audio(root / "tiny-qwen2-audio")


# --- schemathesis configuration ------------------------------------------------------------------


def schemathesis_config(media: Path, *, hooks: bool = False, timeouts_ok: bool = False) -> dict:
    """Dictionaries of realistic values and where schemathesis should use them, as the dict a
    schemathesis.toml holds, for a `media` root that prepare() made. `hooks`: load this file's
    upload hook too (for `st run`);
    `timeouts_ok`: a 503 (the request time limit) is no failure."""
    import base64

    clip = media / "jfk.flac"
    audio = media / "eval" / "audio"
    labels = media / "eval" / "labels"
    refs = [str(clip), clip.as_uri(), str(media / "upload.mp3"),
            # and what the server must refuse or not find: each is a 4xx, never a 5xx
            str(media / "missing.flac"), str(audio), "relative/jfk.flac", "/etc/hostname",
            str(media / ".." / "media" / "jfk.flac"), "https://example.com/clip.mp3", "data:audio/wav;base64,UklGRg=="]
    config: dict = {
        "request-timeout": 120,
        "dictionaries": {
            "models": {"values": ["whisper-1", "tiny.en", "whisper-tiny.en", "default", "base", "whisper-base",
                                  "piper-joe", "omni", "nope"]},
            "voices": {"values": ["alloy", "nova", "piper-joe", "joe", "en_US-joe-medium", "tiny.en", "nobody"]},
            "text": {"values": ["Hello.", "Ask not what your country can do for you.", "It is 10:30 on 2024-05-01.",
                                "?!", " "]},
            "audio": {"values": refs},
            "inline_audio": {"values": [base64.b64encode((media / "upload.mp3").read_bytes()).decode(), "UklGRg==", "bm9pc2U=",
                                        "not base64"]},
            "audio_dirs": {"values": [str(audio), str(media), str(media / "missing"), str(clip), "/etc"]},
            "label_dirs": {"values": [str(labels), str(media / "eval"), str(media / "missing")]},
            "languages": {"values": ["en", "de", "fr", "zz", "EN", "e n"]},
            "tasks": {"values": ["transcribe", "translate", "ask", "caption", "analyze"]},
        },
        "parameters": {
            "body.model": {"dictionary": "models", "probability": 0.75},
            "path.model_id": {"dictionary": "models", "probability": 0.75},
            "body.voice": {"dictionary": "voices", "probability": 0.75},
            "body.input": {"dictionary": "text", "probability": 0.9},
            "body.language": {"dictionary": "languages", "probability": 0.6},
            "body.paths[*]": {"dictionary": "audio", "probability": 0.8},
            "body.inputs[*]": {"dictionary": "audio", "probability": 0.8},
            "body.audio_path": {"dictionary": "audio", "probability": 0.5},
            "body.messages[*].content[*].audio_url.url": {"dictionary": "audio", "probability": 0.8},
            "body.messages[*].content[*].input_audio.data": {"dictionary": "inline_audio", "probability": 0.8},
            "body.audio_dir": {"dictionary": "audio_dirs", "probability": 0.8},
            "body.gt_dir": {"dictionary": "label_dirs", "probability": 0.8},
            "body.task": {"dictionary": "tasks", "probability": 0.5},
        },
    }
    if hooks:
        config["hooks"] = str(Path(__file__).resolve())
    if timeouts_ok:
        config["checks"] = {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}}
    return config


UPLOAD_PATHS = ("/v1/audio/transcriptions", "/v1/audio/translations")


def upload_hook(clip: bytes):
    """A flatmap_body hook: an upload's generated file (random text) is `clip` two times in three,
    once of those with the multilingual model (the default one cannot translate)."""
    from hypothesis import strategies as st

    def flatmap_body(context, body):
        if context.operation is not None and context.operation.path in UPLOAD_PATHS and isinstance(body, dict) and "file" in body:
            return st.sampled_from([body, {**body, "file": clip}, {**body, "file": clip, "model": "whisper-base"}])
        return st.just(body)

    return flatmap_body


def to_toml(config: dict) -> str:
    """Enough TOML for schemathesis_config: nested tables of strings, numbers and lists."""

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)  # a JSON string is a TOML basic string
        return "[" + ", ".join(value(x) for x in v) + "]"

    lines: list[str] = []

    def table(prefix: str, data: dict) -> None:
        scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"\n[{prefix}]")
        lines.extend(f"{json.dumps(k)} = {value(v)}" for k, v in scalars.items())
        for k, v in data.items():
            if k not in scalars:
                table(f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k), v)

    table("", config)
    return "\n".join(lines) + "\n"


# --- the command -----------------------------------------------------------------------------------


def run_schemathesis(
    url: str, media: Path, workdir: Path, *, max_examples: int, seed: int | None = None, max_time: int | None = None,
    phases: str = "examples,coverage,fuzzing,stateful", workers: str = "1", extra: list[str] | tuple = (),
    capture: bool = False, timeouts_ok: bool = False,
) -> subprocess.CompletedProcess:
    """`st run` on url's /openapi.json with CHECKS, this file's dictionaries and upload hook, in
    a child process (the server keeps this one's cores), with an ndjson report in workdir/report.
    st exits non-zero on a failed check or an error (a connection error included)."""
    config_path = workdir / "schemathesis.toml"
    config_path.write_text(to_toml(schemathesis_config(media, hooks=True, timeouts_ok=timeouts_ok)))
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config_path), "run", url + "/openapi.json",
               "--checks", ",".join(CHECKS), "--max-examples", str(max_examples), "--phases", phases,
               "--workers", workers, "--report", "ndjson", "--report-dir", str(workdir / "report"), "--no-color"]
    if seed is not None:
        command += ["--seed", str(seed)]
    if max_time is not None:
        command += ["--max-time", str(max_time)]
    env = {**os.environ, UPLOAD_ENV: str(media / "upload.mp3")}
    return subprocess.run(command + list(extra), env=env, cwd=workdir, capture_output=capture, text=True)


def statuses(report_dir: Path) -> dict[str, dict[str, int]]:
    """Responses per operation in the ndjson report: {"POST /transcribe": {"200": 41, "403 forbidden": 40, ...}}
    (an error's envelope code after its status; "no response" for a request that got none)."""
    import base64

    table: dict[str, dict[str, int]] = {}
    for path in sorted(report_dir.glob("*.ndjson")):
        for line in path.read_text().splitlines():
            finished = json.loads(line).get("ScenarioFinished")
            if not finished:
                continue
            counts = table.setdefault(finished["recorder"]["label"], {})
            for interaction in (finished["recorder"].get("interactions") or {}).values():
                response = interaction.get("response")
                key = "no response"
                if response:
                    key = str(response["status_code"])
                    try:
                        code = json.loads(base64.b64decode(response["content"]["$base64"]))["error"]["code"]
                    except (KeyError, TypeError, ValueError):
                        code = None
                    if response["status_code"] >= 400 and isinstance(code, str):
                        key += " " + code
                counts[key] = counts.get(key, 0) + 1
    return table


def format_statuses(table: dict[str, dict[str, int]]) -> str:
    lines = []
    for label, counts in sorted(table.items()):
        ordered = sorted(counts.items(), key=lambda kv: (kv[0], -kv[1]))
        lines.append(f"  {label}: {sum(counts.values())} — " + ", ".join(f"{k}: {n}" for k, n in ordered))
    total: dict[str, int] = {}
    for counts in table.values():
        for key, n in counts.items():
            status = key.split()[0]
            total[status] = total.get(status, 0) + n
    lines.append(f"  all: {sum(total.values())} — " + ", ".join(f"{k}: {n}" for k, n in sorted(total.items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=100, help="cases per operation in the fuzzing phase (default 100)")
    parser.add_argument("--seed", type=int, help="schemathesis seed, for a run that repeats")
    parser.add_argument("--max-time", type=int, help="seconds for the whole run; fuzzing and stateful testing "
                        "repeat until they are spent")
    parser.add_argument("--phases", default="examples,coverage,fuzzing,stateful", help="st run --phases")
    parser.add_argument("--workers", default="1", help="concurrent st workers (default 1; the server shares the cores)")
    parser.add_argument("--alm", action="store_true", help="also serve a tiny random audio-language model as 'omni', "
                        "so chat completions run for real (needs torch and transformers); a 503 is then no failure: "
                        "random weights asked for 32767 tokens run into the 60 s request limit")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (cache, jobs, config, report)")
    args = parser.parse_args(argv)

    try:
        import schemathesis  # noqa: F401
    except ImportError:
        print("api_fuzz: schemathesis is not installed (pip install schemathesis)", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="harken-api-fuzz-"))
    try:
        media = prepare(root)
        sys.path.insert(0, str(REPO))
        from tests.live_server import live_server

        with live_server(settings(root, media, alm=tiny_alm(root) if args.alm else None)) as url:
            print(f"api_fuzz: harken at {url}, media root {media}", flush=True)
            start = time.monotonic()
            done = run_schemathesis(url, media, root, max_examples=args.max_examples, seed=args.seed,
                                    max_time=args.max_time, phases=args.phases, workers=args.workers, extra=extra,
                                    timeouts_ok=args.alm)
            print(f"api_fuzz: st exited {done.returncode} after {time.monotonic() - start:.0f} s", flush=True)
        table = statuses(root / "report")
        if table:
            print("api_fuzz: responses per operation (status, and the error's code):\n" + format_statuses(table))
        return done.returncode
    finally:
        if args.keep:
            print(f"api_fuzz: kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "_schemathesis_hooks":  # loaded by `st run` through the config's `hooks`
    import schemathesis

    schemathesis.hook(upload_hook(Path(os.environ[UPLOAD_ENV]).read_bytes()))
elif __name__ == "__main__":
    sys.exit(main())
