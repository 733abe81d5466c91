"""Which audio a request may name: local paths under allowed roots, and allowed http(s) hosts.

Uploads and `data:` URLs carry their own bytes and are always fine. Anything that makes the
server read its own disk or the network is refused unless the operator allowed it: a local
path must resolve (symlinks and `..` followed) inside one of `allowed_media_roots`, and an
http(s) URL must name a host in `allowed_url_domains`. Refusals never echo the resolved path.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from harken.audio import AudioSource
from harken.config import Settings
from harken.errors import AudioNotFoundError, ForbiddenError, InvalidOptionError, PayloadTooLargeError

__all__ = ["MediaPolicy", "named_bytes"]


def named_bytes(data: bytes, name: str | None) -> io.BytesIO:
    """Bytes that load_audio names in its messages as the client did, never by a server path."""
    buffer = io.BytesIO(data)
    buffer.name = name or "audio"
    return buffer


class MediaPolicy:
    def __init__(self, settings: Settings) -> None:
        self.roots = [Path(os.path.realpath(r)) for r in settings.allowed_media_roots]
        self.domains = {d.lower().lstrip(".") for d in settings.allowed_url_domains}
        self.url_timeout_s = settings.server.url_timeout_s
        self.url_max_bytes = int(settings.server.url_max_mb * 1024 * 1024)

    def local_dir(self, value: str, *, param: str = "path") -> Path:
        """Like local_path, for a folder."""
        real = self._inside_roots(value, param)
        if not real.is_dir():
            raise AudioNotFoundError(f"{value!r}: no such folder", param=param)
        return real

    def local_path(self, value: str, *, param: str = "path") -> Path:
        """The real path behind `value` (a path or file:// URL) if it lies under an allowed root."""
        real = self._inside_roots(value, param)
        if not real.is_file():
            raise AudioNotFoundError(f"{value!r}: no such file", param=param)
        return real

    def _inside_roots(self, value: str, param: str) -> Path:
        raw = unquote(urlparse(value).path) if value.startswith("file://") else value
        if not self.roots:
            raise ForbiddenError("reading local paths is turned off on this server (no allowed media roots)", param=param)
        if not os.path.isabs(raw):
            raise InvalidOptionError(f"{param} must be an absolute path", param=param)
        real = Path(os.path.realpath(raw))
        if not any(real == root or real.is_relative_to(root) for root in self.roots):
            raise ForbiddenError(f"{value!r} is outside the allowed media roots", param=param)
        return real

    def source(self, value: str, *, param: str = "path") -> AudioSource:
        """Turn a request's audio reference into something load_audio reads."""
        if value.startswith("data:"):
            return value
        if value.startswith(("http://", "https://")):
            return named_bytes(self.fetch(value, param=param), value)
        return named_bytes(self.local_path(value, param=param).read_bytes(), value)

    def fetch(self, url: str, *, param: str = "url") -> bytes:
        import httpx

        host = (urlparse(url).hostname or "").lower()
        if not self.domains:
            raise ForbiddenError("fetching audio URLs is turned off on this server", param=param)
        if not any(host == d or host.endswith("." + d) for d in self.domains):
            raise ForbiddenError(f"host {host!r} is not in the allowed URL domains", param=param)
        try:
            # No redirects: a redirect could lead anywhere, including off the allowed hosts.
            with httpx.stream("GET", url, timeout=self.url_timeout_s, follow_redirects=False) as response:
                if response.status_code != 200:
                    raise AudioNotFoundError(f"{url} answered HTTP {response.status_code}", param=param)
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.url_max_bytes:
                        raise PayloadTooLargeError(f"{url} is larger than {self.url_max_bytes} bytes", param=param)
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise AudioNotFoundError(f"cannot fetch {url}: {type(exc).__name__}", param=param) from None
