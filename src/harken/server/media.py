"""Which audio a request may name: local paths under allowed roots, and allowed http(s) hosts.

Uploads and `data:` URLs carry their own bytes and are always fine. Anything that makes the
server read its own disk or the network is refused unless the operator allowed it: a local
path must resolve (symlinks and `..` followed) inside one of `allowed_media_roots`, which the
one `PathGuard` checks on the real path of every file the server opens; it must be a regular
file no larger than the upload cap. An http(s) URL must name a host in `allowed_url_domains`,
and is fetched asynchronously, whole, within `url_timeout_s`. Refusals never echo a resolved path.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from harken.audio import AudioSource, named_bytes
from harken.config import Settings
from harken.errors import AudioNotFoundError, ForbiddenError, InvalidOptionError, PayloadTooLargeError
from harken.files import PathGuard, describe_os_error

__all__ = ["MediaPolicy", "named_bytes"]


class MediaPolicy:
    def __init__(self, settings: Settings) -> None:
        server = settings.server
        self.guard = PathGuard(settings.allowed_media_roots, max_bytes=int(server.max_upload_mb * 1024 * 1024))
        self.domains = {d.lower().lstrip(".") for d in settings.allowed_url_domains}
        self.url_timeout_s = server.url_timeout_s
        self.url_max_bytes = int(server.url_max_mb * 1024 * 1024)

    def local_dir(self, value: str, *, param: str = "path") -> Path:
        """The real path of a folder named by a request, if it lies under an allowed root."""
        real = self.local(value, param=param)
        if not real.is_dir():
            raise AudioNotFoundError(f"{value!r}: no such folder", param=param)
        return real

    def local_file(self, value: str, *, param: str = "path") -> Path:
        """Like local_dir, for a regular file."""
        real = self.local(value, param=param)
        if not real.is_file():
            raise AudioNotFoundError(f"{value!r}: no such file", param=param)
        return real

    def local(self, value: str, *, param: str = "path") -> Path:
        """The real path behind `value` (an absolute path or file:// URL) if it lies under an
        allowed root; whether anything is there is for the reader to find out."""
        raw = unquote(urlparse(value).path) if value.startswith("file://") else value
        if not self.guard.roots:
            raise ForbiddenError("reading local paths is turned off on this server (no allowed media roots)", param=param)
        if "\0" in raw:
            raise InvalidOptionError(f"{param} cannot hold a NUL byte", param=param)
        if not os.path.isabs(raw):
            raise InvalidOptionError(f"{param} must be an absolute path", param=param)
        try:
            return self.guard.check(raw)
        except ForbiddenError:
            raise ForbiddenError(f"{value!r} is outside the allowed media roots", param=param) from None

    def read(self, value: str, *, param: str = "path") -> bytes:
        """The bytes of the regular file `value` names (checked as `local` is)."""
        real = self.local(value, param=param)
        try:
            return self.guard.read(real)
        except OSError as exc:
            raise AudioNotFoundError(f"{value!r}: {describe_os_error(exc)}", param=param) from None
        except PayloadTooLargeError:
            raise PayloadTooLargeError(f"{value!r} is larger than the {self.guard.max_bytes} byte limit", param=param) from None

    def check(self, value: str, *, param: str = "path") -> None:
        """Refuse a reference this server may not follow, before anything is read or fetched."""
        if value.startswith("data:"):
            return
        if value.startswith(("http://", "https://")):
            self._check_host(value, param)
        else:
            self.local(value, param=param)

    async def source(self, value: str, *, param: str = "path") -> AudioSource:
        """Turn a request's audio reference into something load_audio reads. Await it inside the
        request's deadline: a slow origin or a client that leaves cancels the fetch."""
        if value.startswith("data:"):
            return value
        if value.startswith(("http://", "https://")):
            return named_bytes(await self.fetch(value, param=param), value)
        return named_bytes(await asyncio.to_thread(self.read, value, param=param), value)

    async def fetch(self, url: str, *, param: str = "url") -> bytes:
        """The whole body of an allowed http(s) URL, within `url_timeout_s` from the first byte
        asked to the last (a per-read timeout would let a 1 byte/s origin hold on forever)."""
        import httpx

        self._check_host(url, param)
        try:
            async with asyncio.timeout(self.url_timeout_s), httpx.AsyncClient(follow_redirects=False) as client:
                # No redirects: a redirect could lead anywhere, including off the allowed hosts.
                async with client.stream("GET", url, timeout=self.url_timeout_s) as response:
                    if response.status_code != 200:
                        raise AudioNotFoundError(f"{url} answered HTTP {response.status_code}", param=param)
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > self.url_max_bytes:
                        raise PayloadTooLargeError(f"{url} is larger than {self.url_max_bytes} bytes", param=param)
                    body, size = bytearray(), 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > self.url_max_bytes:
                            raise PayloadTooLargeError(f"{url} is larger than {self.url_max_bytes} bytes", param=param)
                        body += chunk
                    return bytes(body)
        except TimeoutError:
            raise AudioNotFoundError(f"cannot fetch {url}: not complete within {self.url_timeout_s:g} s", param=param) from None
        except httpx.HTTPError as exc:
            raise AudioNotFoundError(f"cannot fetch {url}: {type(exc).__name__}", param=param) from None

    def _check_host(self, url: str, param: str) -> None:
        host = (urlparse(url).hostname or "").lower()
        if not self.domains:
            raise ForbiddenError("fetching audio URLs is turned off on this server", param=param)
        if not any(host == d or host.endswith("." + d) for d in self.domains):
            raise ForbiddenError(f"host {host!r} is not in the allowed URL domains", param=param)
