"""Content-hash result cache: an in-memory LRU bounded in entries and bytes, optionally backed
by JSON files on disk.

Entries are kept as their JSON text, not as live dicts: the text is several times smaller than
the objects, its size is what the byte bound counts, and every hit gets a fresh copy that no
caller can change for the next.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from harken.files import write_atomic

__all__ = ["ResultCache", "cache_key"]


def cache_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class ResultCache:
    """Maps a key to a JSON-able dict. Thread-safe; disk writes are atomic."""

    def __init__(self, memory_items: int = 256, directory: Path | None = None, *, memory_bytes: int = 64 << 20) -> None:
        self.memory_items, self.memory_bytes = memory_items, memory_bytes
        self.directory = directory
        self._items: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            text = self._items.get(key)
            if text is not None:
                self._items.move_to_end(key)
        if text is None and self.directory is not None:
            try:
                text = (self.directory / f"{key}.json").read_text()
            except OSError:
                return None
            self._remember(key, text)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:  # a damaged file on disk is a miss
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        text = json.dumps(value)
        self._remember(key, text)
        if self.directory is not None:
            write_atomic(self.directory / f"{key}.json", text)

    def _remember(self, key: str, text: str) -> None:
        if self.memory_items <= 0 or len(text) > self.memory_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes += len(text) - (len(old) if old is not None else 0)
            self._items[key] = text
            while len(self._items) > self.memory_items or self._bytes > self.memory_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)
