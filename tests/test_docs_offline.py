"""/docs and /redoc with no network: every script, style and icon they load is served by harken."""

from __future__ import annotations

import re
import subprocess
from html.parser import HTMLParser

import httpx
import pytest

from harken import Settings
from tests.live_server import live_server



@pytest.fixture(scope="module")
def server(cache_dir):
    with live_server(Settings.load(cache_dir=cache_dir)) as url:
        yield url


@pytest.fixture(scope="module")
def keyed_server(cache_dir):
    with live_server(Settings.load(cache_dir=cache_dir, api_keys=["docs-test-key"])) as url:
        yield url


class _Refs(HTMLParser):
    """Every URL a page makes the browser load: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src", "redoc": "spec-url"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.refs.append(value)


def _refs(html: str) -> list[str]:
    parser = _Refs()
    parser.feed(html)
    return parser.refs


@pytest.mark.parametrize("page,assets", [
    ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
    ("/redoc", {"redoc.standalone.js", "favicon.png"}),
])
def test_docs_pages_load_nothing_from_outside(server, page, assets):
    response = httpx.get(server + page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    # No CDN, no Google Fonts: not one absolute http(s) or protocol-relative URL in the page.
    assert not re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I), html
    refs = _refs(html)
    assert {r.rsplit("/", 1)[-1] for r in refs} >= assets, refs
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
        asset = httpx.get(server + ref)
        assert asset.status_code == 200, ref
        if ref.endswith(".js"):
            assert len(asset.content) > 500_000 and "javascript" in asset.headers["content-type"], ref
        elif ref.endswith(".css"):
            assert len(asset.content) > 50_000 and asset.headers["content-type"].startswith("text/css"), ref
        elif ref.endswith(".png"):
            assert asset.content.startswith(b"\x89PNG") and len(asset.content) > 500, ref
        elif ref == "/openapi.json":
            assert asset.json()["info"]["title"] == "harken"


def test_swagger_oauth2_redirect_is_served_too(server):
    response = httpx.get(server + "/docs/oauth2-redirect")
    assert response.status_code == 200 and "oauth2" in response.text.lower()


def test_docs_keep_the_api_key_rule(keyed_server):
    # As before: with API keys set, the docs (and now their assets) need a key like any route.
    assert httpx.get(keyed_server + "/docs").status_code == 401
    assert httpx.get(keyed_server + "/static-offline-docs/swagger-ui.css").status_code == 401
    auth = {"Authorization": "Bearer docs-test-key"}
    assert httpx.get(keyed_server + "/docs", headers=auth).status_code == 200
    assert httpx.get(keyed_server + "/static-offline-docs/swagger-ui.css", headers=auth).status_code == 200


def test_docs_render_in_a_headless_browser(server, tmp_path, chromium):
    """Chromium, with every host but 127.0.0.1 unresolvable, draws Swagger UI's operations."""
    browser = [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
               "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--virtual-time-budget=15000",
               f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*browser, "--dump-dom", server + "/docs"], capture_output=True, text=True, timeout=120)
    # Swagger UI builds the page from /openapi.json in the browser: its operations are in the DOM.
    assert "opblock" in dom.stdout and "/v1/audio/transcriptions" in dom.stdout, dom.stderr[-2000:]
    redoc = subprocess.run([*browser, "--dump-dom", server + "/redoc"], capture_output=True, text=True, timeout=120)
    assert "/v1/audio/transcriptions" in redoc.stdout and "menu-content" in redoc.stdout, redoc.stderr[-2000:]
    shot = tmp_path / "docs.png"
    subprocess.run([*browser, "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1366,900", server + "/docs"],
                   capture_output=True, timeout=120)
    # A blank white page compresses to a few kB; the drawn one (text, coloured method badges) to far more.
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 40_000
