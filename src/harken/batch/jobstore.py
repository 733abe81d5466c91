"""The job store: one SQLite file (WAL) that makes batch runs resumable.

Each item is a row keyed by its input and its work (a manifest row's own task and options, ""
for the command's): its output name (fixed the first time, so reruns write the same file),
status, attempts and the last error. A row left `running` means the process died on it (a
crash, a kill): that counts as a failed attempt, so an input that kills the process every time
ends up failed after its retries instead of crash-looping every run. Outputs are renamed into place before their row says `done`, so a crash between the
two only means the file is rewritten, never that it is missing or half-written.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["JobStore", "Item", "Key", "INTERRUPTED"]

INTERRUPTED = "the process stopped while working on this input (killed, or crashed by it)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    input TEXT NOT NULL,
    work TEXT NOT NULL DEFAULT '',
    position INTEGER NOT NULL,
    output TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    audio_s REAL,
    elapsed_s REAL,
    updated REAL,
    PRIMARY KEY (input, work)
);
"""
_COLUMNS = "input, position, output, status, attempts, error, audio_s, elapsed_s, updated"

Key = tuple[str, str]  # (input, work)


@dataclass(frozen=True)
class Item:
    input: str
    position: int
    output: str
    status: str
    attempts: int
    error: str | None
    audio_s: float | None
    elapsed_s: float | None
    work: str = ""

    @property
    def key(self) -> Key:
        return (self.input, self.work)


class JobStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self._upgrade()

    def settings(self, values: dict[str, object]) -> dict[str, object] | None:
        """Record the run's settings; returns the earlier ones when they differ (None when new or equal)."""
        text = json.dumps(values, sort_keys=True)
        with self._lock:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('settings', ?)", (text,))
                return None
        return None if row[0] == text else json.loads(row[0])

    def add(self, keys: list[Key], output_name) -> None:
        """Register items not seen before; `output_name(input, taken)` picks a unique output name,
        so one input with two works gets `<stem>` and `<stem>-2`."""
        with self._lock:
            known = {(r[0], r[1]) for r in self.db.execute("SELECT input, work FROM items")}
            taken = {r[0] for r in self.db.execute("SELECT output FROM items")}
            start = self.db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM items").fetchone()[0]
            self.db.execute("BEGIN")
            for offset, (name, work) in enumerate(k for k in dict.fromkeys(keys) if k not in known):
                out = output_name(name, taken)
                taken.add(out)
                self.db.execute("INSERT INTO items (input, work, position, output) VALUES (?, ?, ?, ?)",
                                (name, work, start + offset, out))
            self.db.execute("UPDATE items SET status = 'failed', error = ? WHERE status = 'running'", (INTERRUPTED,))
            self.db.execute("COMMIT")

    def todo(self, keys: list[Key], max_attempts: int) -> list[Item]:
        wanted = set(keys)
        return [i for i in self.items() if i.key in wanted and
                (i.status == "pending" or (i.status == "failed" and i.attempts < max_attempts))]

    def start(self, item: Item) -> None:
        self._set(item.key, "running", attempts_delta=1)

    def done(self, item: Item, audio_s: float, elapsed_s: float) -> None:
        self._set(item.key, "done", audio_s=audio_s, elapsed_s=elapsed_s, error=None)

    def failed(self, item: Item, error: str) -> None:
        self._set(item.key, "failed", error=error)

    def release(self, item: Item) -> None:
        """Back to pending without counting an attempt (an interrupted run)."""
        self._set(item.key, "pending", attempts_delta=-1)

    def items(self) -> list[Item]:
        with self._lock:
            rows = self.db.execute(
                "SELECT input, position, output, status, attempts, error, audio_s, elapsed_s, work FROM items ORDER BY position"
            ).fetchall()
        return [Item(*r) for r in rows]

    def close(self) -> None:
        self.db.close()

    def _upgrade(self) -> None:
        """A store written before items had a work column (keyed by input alone) gets one, every
        row the command's work, so a run begun by an older harken resumes where it was."""
        if "work" in {r[1] for r in self.db.execute("PRAGMA table_info(items)")}:
            return
        self.db.executescript(
            f"BEGIN; ALTER TABLE items RENAME TO items_old; {_SCHEMA}"
            f"INSERT INTO items ({_COLUMNS}) SELECT {_COLUMNS} FROM items_old; DROP TABLE items_old; COMMIT;"
        )

    def _set(self, key: Key, status: str, *, attempts_delta: int = 0, **fields: object) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        sql = (f"UPDATE items SET status = ?, attempts = attempts + ?, updated = ?{', ' + sets if sets else ''}"
               " WHERE input = ? AND work = ?")
        with self._lock:
            self.db.execute(sql, (status, attempts_delta, time.time(), *fields.values(), *key))
