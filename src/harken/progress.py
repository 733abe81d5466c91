"""Progress of long transcriptions on a terminal: audio seconds done of the total, speed, ETA.

Shown on stderr, and only when stderr is a terminal, so that piped and logged runs stay clean.
Callbacks arrive from the engine's worker threads; Rich's Progress is safe to update from them.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeRemainingColumn
from rich.text import Text

from harken.engines.base import OnProgress

__all__ = ["AudioProgress"]


class _Seconds(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.completed:.0f}/{task.total or 0:.0f} s of audio")


class _Speed(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f}x real time" if task.speed else "")


class AudioProgress:
    """One transient bar per file while it is transcribed; nothing at all off a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> AudioProgress:
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), _Seconds(), _Speed(), TimeRemainingColumn(),
                # stdout carries the transcripts: it is not the bar's to take over.
                console=self.console, transient=True, redirect_stdout=False,
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def track(self, label: str) -> OnProgress | None:
        """The callback for the next file, or None when nothing is shown."""
        progress = self.progress
        if progress is None:
            return None

        def seen(done: float, total: float) -> None:
            if self.task is None:
                self.task = progress.add_task(label, total=total)
            progress.update(self.task, completed=done)

        return seen

    def finish(self) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.remove_task(self.task)
        self.task = None
