"""API keys, per-key rate limits and the upload cap, as one ASGI middleware.

It is plain ASGI rather than a Starlette BaseHTTPMiddleware so that streaming responses and
client disconnects pass through untouched.

Keys: `Authorization: Bearer KEY` (the scheme in any case; spaces, tabs or NBSP around the key
are trimmed). A request with more than one Authorization header is refused: which one a proxy
in front reads and which one this server reads could differ. Each client address may fail
`auth_failures_per_minute` times a minute; past that, all its requests get 429 until the budget
refills, so a key cannot be guessed at line speed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from harken.config import Settings
from harken.errors import AuthenticationError, HarkenError, InvalidOptionError, PayloadTooLargeError, RateLimitError
from harken.server.errors import envelope

__all__ = ["KeyRing", "RateLimiter", "SecurityMiddleware", "OPEN_PATHS"]

OPEN_PATHS = frozenset({"/healthz", "/readyz"})


class KeyRing:
    """The accepted API keys. Only a short hash of a key ever leaves this class (as its id)."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys if k]

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        keys = list(settings.api_keys)
        if settings.api_keys_file is not None:
            try:
                text = settings.api_keys_file.read_text()
            except OSError as exc:
                raise InvalidOptionError(f"cannot read api_keys_file: {exc.strerror}", param="api_keys_file") from None
            keys += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        return cls(keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, authorization: str | None) -> str:
        """The key id for a valid `Authorization: Bearer KEY` header; AuthenticationError otherwise."""
        if not authorization:
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("the Authorization header must be 'Bearer <key>'")
        given = token.strip().encode()
        # Compare against every key, in constant time each, so timing says nothing about which matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(key, given)
        if not matched:
            raise AuthenticationError("invalid API key")
        return key_id(token.strip())


def key_id(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


_MAX_CLIENTS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per client: `per_minute` requests a minute, bursting up to the same number."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.RLock()

    def check(self, who: str) -> None:
        """Spend one request for `who`, or RateLimitError when its bucket is empty."""
        if self.exhausted(who):
            raise RateLimitError("rate limit reached; retry later", retry_after=self.wait(who))
        self.spend(who)

    def exhausted(self, who: str) -> bool:
        return self.rate > 0 and self._refill(who).tokens < 1.0

    def wait(self, who: str) -> float:
        """Seconds until `who` has a whole request again."""
        return max(0.0, 1.0 - self._refill(who).tokens) / self.rate if self.rate > 0 else 0.0

    def spend(self, who: str) -> None:
        if self.rate > 0:
            with self._lock:
                self._refill(who).tokens -= 1.0

    def _refill(self, who: str) -> _Bucket:
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(who)
            if bucket is None:
                if len(self._buckets) >= _MAX_CLIENTS:
                    self._forget_full(now)
                bucket = self._buckets[who] = _Bucket(self.capacity, now)
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            return bucket

    def _forget_full(self, now: float) -> None:
        # A full bucket says nothing a fresh one would not: drop those, so memory stays bounded
        # however many addresses or keys come by.
        self._buckets = {
            k: b for k, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate < self.capacity
        }


class SecurityMiddleware:
    def __init__(
        self, app: ASGIApp, *, keys: KeyRing, limiter: RateLimiter, failures: RateLimiter, max_body_bytes: int
    ) -> None:
        self.app, self.keys, self.limiter, self.failures = app, keys, limiter, failures
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            who = self._admit(scope)
        except HarkenError as exc:
            await _refuse(send, exc)
            return
        audit = scope.get("state", {}).get("audit")
        if audit is not None:
            audit.key_id = who if who.startswith("key-") else None
        await self.app(scope, self._capped(receive), send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The same keys and rate limit for a socket, checked before the handshake completes."""
        try:
            self._admit(scope)
        except HarkenError as exc:
            message = await receive()  # websocket.connect
            if message["type"] != "websocket.connect":
                return
            if "websocket.http.response" in scope.get("extensions", {}):
                await _refuse(send, exc, prefix="websocket.")
            else:  # a server without denial responses answers a plain 403
                await send({"type": "websocket.close", "code": 1008, "reason": exc.message[:120]})
            return
        await self.app(scope, receive, send)

    def _admit(self, scope: Scope) -> str:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise PayloadTooLargeError(f"request body larger than {self.max_body_bytes // (1024 * 1024)} MB")
        if scope["path"] in OPEN_PATHS:
            return "open"
        who = self._authenticate(scope, headers) if self.keys.enabled else _client(scope)
        self.limiter.check(who)
        return who

    def _authenticate(self, scope: Scope, headers: dict[str, str]) -> str:
        client = _client(scope)
        if self.failures.exhausted(client):
            raise RateLimitError("too many failed API keys from this address; retry later", retry_after=self.failures.wait(client))
        try:
            if sum(k.lower() == b"authorization" for k, _ in scope["headers"]) > 1:
                raise AuthenticationError("more than one Authorization header; send exactly one")
            return self.keys.check(headers.get("authorization"))
        except AuthenticationError:
            self.failures.spend(client)
            raise

    def _capped(self, receive: Receive) -> Receive:
        # A chunked body has no Content-Length: count what arrives and stop at the cap.
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise PayloadTooLargeError(f"request body larger than {self.max_body_bytes // (1024 * 1024)} MB")
            return message

        return wrapped


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"ip-{client[0]}" if client else "ip-unknown"


async def _refuse(send: Send, exc: HarkenError, prefix: str = "") -> None:
    body = json.dumps(envelope(exc.message, exc.type, exc.code, exc.param)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if isinstance(exc, AuthenticationError):
        headers.append((b"www-authenticate", b"Bearer"))
    retry = getattr(exc, "retry_after", None)
    if retry is not None:
        headers.append((b"retry-after", str(max(1, int(retry + 0.999))).encode()))
    await send({"type": prefix + "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": prefix + "http.response.body", "body": body})
