"""Content-hash result cache: an in-memory LRU, optionally backed by JSON files on disk."""

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

    def __init__(self, memory_items: int = 256, directory: Path | None = None) -> None:
        self.memory_items = memory_items
        self.directory = directory
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        if self.directory is None:
            return None
        try:
            value = json.loads((self.directory / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None
        self._remember(key, value)
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._remember(key, value)
        if self.directory is not None:
            write_atomic(self.directory / f"{key}.json", json.dumps(value))

    def _remember(self, key: str, value: dict[str, Any]) -> None:
        if self.memory_items <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.memory_items:
                self._items.popitem(last=False)
