"""Errors that say what went wrong, where, and what to do: the real `harken` console script, one
line on stderr and a non-zero exit for each."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARKEN = Path(sys.executable).with_name("harken")
if not HARKEN.is_file():
    HARKEN = Path(shutil.which("harken") or "harken")

# The import names of what the alm extra installs (jsonschema, xgrammar, transformers, pillow).
ALM_EXTRA = "jsonschema,xgrammar,transformers,PIL"
# sys.modules[name] = None makes `import name` fail as it does when the package is not installed.
WITHOUT = (
    "import sys; [sys.modules.__setitem__(m, None) for m in sys.argv[1].split(',')];"
    "sys.argv = ['harken', *sys.argv[2:]]; from harken.cli import main; main()"
)
# Installed from this checkout (editable here, plain in CI): the fix is pip install [-e] ".[EXTRA]".
CHECKOUT_PIP = r'pip install (?:-e )?"\.\[{}\]"'


def harken(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run([str(HARKEN), *args], capture_output=True, text=True, cwd=cwd or ROOT,
                          env=env, timeout=timeout)


def harken_without(modules: str, *args: str, cwd: Path | None = None):
    return subprocess.run([sys.executable, "-c", WITHOUT, modules, *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=300)


def one_line(out: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single `harken: error: ...` line on stderr, after checking the exit code."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code, (out.returncode, out.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("harken: error: "), out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr
    return lines[0]


# --- a missing optional dependency names its extra and the pip command for this install -------


def test_analyze_without_the_alm_extra_names_it(data_dir):
    line = one_line(harken_without(ALM_EXTRA, "analyze", str(data_dir / "jfk.flac")))
    assert "alm extra" in line and "jsonschema is not installed" in line
    assert re.search(CHECKOUT_PIP.format("alm"), line), line
    assert "ModuleNotFoundError" not in line


def test_an_audio_language_model_without_the_alm_extra_names_it(data_dir, tmp_path):
    model = tmp_path / "tiny-qwen2-audio"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2_audio"}))
    line = one_line(harken_without(ALM_EXTRA, "ask", str(data_dir / "jfk.flac"), "Who speaks?", "--model", str(model)))
    assert "audio-language model" in line and "alm extra" in line and "transformers is not installed" in line
    assert re.search(CHECKOUT_PIP.format("alm"), line), line


def test_serve_without_the_server_extra_names_it():
    line = one_line(harken_without("fastapi,uvicorn", "serve", "--port", "0"))
    assert "server extra" in line and "is not installed" in line
    assert re.search(CHECKOUT_PIP.format("server"), line), line


def test_the_pip_command_points_at_the_checkout_from_elsewhere(data_dir, tmp_path):
    line = one_line(harken_without(ALM_EXTRA, "analyze", str(data_dir / "jfk.flac"), cwd=tmp_path))
    assert re.search(r'pip install (?:-e )?"' + re.escape(str(ROOT)) + r'\[alm\]"', line), line


# --- settings files ------------------------------------------------------------------------


def test_a_toml_syntax_error_names_the_file_line_and_parser_message(tmp_path):
    (tmp_path / "harken.toml").write_text('default_model = "whisper-tiny.en"\n[server\nport = 8001\n')
    line = one_line(harken("models", cwd=tmp_path))
    assert str(tmp_path / "harken.toml") in line and "line 2, column 8" in line
    assert "Expected ']' at the end of a table declaration" in line and "TOMLDecodeError" not in line


def test_a_toml_syntax_error_in_a_config_file_given_on_the_command_line(tmp_path, data_dir):
    config = tmp_path / "server.toml"
    config.write_text('[models.mine]\nengine = "whisper"\nsource = "hf:org/repo\n')
    line = one_line(harken("transcribe", str(data_dir / "jfk.flac"), "--config", str(config)))
    assert f"{config}, line 3" in line and "invalid TOML" in line and "fix" in line


# --- a hub model that is not downloaded, with no hub to download it from -------------------


@pytest.fixture()
def hub_model(tmp_path) -> tuple[Path, dict[str, str]]:
    config = tmp_path / "hub.toml"
    config.write_text('[models.hubby]\nengine = "whisper"\nsource = "hf:Systran/faster-whisper-tiny"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HARKEN_"))}
    env.update(HF_HOME=str(tmp_path / "hf-home"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    return config, env


def test_a_hub_model_offline_says_it_is_not_downloaded_and_how_to_get_it(hub_model, data_dir):
    config, env = hub_model
    line = one_line(harken("transcribe", str(data_dir / "jfk.flac"), "--model", "hubby", "--config", str(config),
                           env={**env, "HF_HUB_OFFLINE": "1"}))
    assert "Systran/faster-whisper-tiny is not downloaded" in line and "HF_HUB_OFFLINE" in line
    assert "hf download Systran/faster-whisper-tiny" in line and "local directory" in line


def test_a_hub_model_with_no_network_says_the_hub_cannot_be_reached(hub_model, data_dir):
    config, env = hub_model
    with socket.socket() as closed:  # a port nothing listens on: connection refused, as with no network
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
    line = one_line(harken("transcribe", str(data_dir / "jfk.flac"), "--model", "hubby", "--config", str(config),
                           env={**env, "HF_ENDPOINT": endpoint}))
    assert "is not downloaded" in line and "cannot be reached" in line and "hf download" in line
    assert "LocalEntryNotFoundError" not in line


# --- misspelt model names -----------------------------------------------------------------


@pytest.mark.parametrize("name,suggestion", [
    ("tiny", "did you mean 'tiny.en' (whisper-tiny.en)?"),
    ("whisper-tiny", "did you mean 'whisper-tiny.en'"),
    ("small", None),
])
def test_a_misspelt_model_gets_a_suggestion_and_the_models_that_can_transcribe(name, suggestion, data_dir):
    line = one_line(harken("transcribe", str(data_dir / "jfk.flac"), "--model", name))
    assert f"unknown model {name!r}" in line
    if suggestion:
        assert suggestion in line
    else:
        assert "did you mean" not in line
    assert "models that transcribe: whisper-tiny.en (aliases: tiny.en, default, whisper-1), whisper-base (aliases: base)" in line
    assert "piper" not in line  # a voice cannot transcribe


def test_a_misspelt_voice_gets_a_suggestion(tmp_path):
    line = one_line(harken("speak", "hello", "--output", str(tmp_path / "hello.wav"), "--voice", "jo"))
    assert "unknown voice 'jo'" in line and "did you mean 'joe' (piper-joe)?" in line
    assert "voices: piper-joe (aliases: joe, en_US-joe-medium)" in line and "whisper" not in line


# --- harken serve on a busy port ----------------------------------------------------------


def test_serve_on_a_busy_port_says_so_in_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = harken("serve", "--port", str(port), timeout=120)
    assert one_line(out) == (
        f"harken: error: cannot listen on 127.0.0.1:{port}: address already in use (another server? choose --port)"
    )
    assert out.stdout == ""
