"""Shared fixtures: the real recordings in tests/data and one Service on the bundled models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harken import Service, Settings
from tests.vllm_upstream import vllm_upstream  # noqa: F401  (the session's real vLLM; skips without one)

DATA = Path(__file__).parent / "data"


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "vllm: needs a real vLLM upstream (scripts/install-vllm.sh); deselect with -m 'not vllm'")


def manifest() -> dict[str, dict]:
    return {row["path"]: row for row in map(json.loads, (DATA / "manifest.jsonl").read_text().splitlines())}


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, for tests that render a page. Without it they skip, unless
    HARKEN_REQUIRE_CHROMIUM=1 (CI sets it and installs the package), which makes them fail."""
    path = Path("/usr/bin/chromium")
    if not path.exists():
        message = "needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
        if os.environ.get("HARKEN_REQUIRE_CHROMIUM", "") == "1":
            pytest.fail(message + " [HARKEN_REQUIRE_CHROMIUM=1]", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def references() -> dict[str, dict]:
    return manifest()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("harken-cache")


@pytest.fixture(scope="session")
def service(cache_dir: Path) -> Service:
    return Service(Settings.load(cache_dir=cache_dir))


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory) -> None:
    # Tests must not read a developer's harken.toml, HARKEN_* settings or result cache.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    for name in [k for k in __import__("os").environ if k.startswith("HARKEN_")]:
        monkeypatch.delenv(name)
