"""What a batch runs over: a folder (recursively), a glob, or a manifest of paths."""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

from harken.errors import InvalidOptionError
from harken.evaluation.datasets import AUDIO_SUFFIXES

__all__ = ["BatchInputs", "expand_inputs", "output_name"]


@dataclass
class BatchInputs:
    paths: list[str]
    problems: list[str] = field(default_factory=list)  # bad manifest lines: reported, never silently dropped


def expand_inputs(spec: str) -> BatchInputs:
    path = Path(spec)
    if path.is_dir():
        found = [str(p.resolve()) for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]
        return _checked(spec, BatchInputs(found))
    if path.is_file() and path.suffix in (".jsonl", ".csv", ".txt"):
        return _checked(spec, _manifest(path))
    if any(c in spec for c in "*?["):
        return _checked(spec, BatchInputs([str(Path(p).resolve()) for p in sorted(glob.glob(spec, recursive=True))
                                           if Path(p).is_file()]))
    if path.is_file():
        return BatchInputs([str(path.resolve())])
    raise InvalidOptionError(f"{spec}: no such folder, file, manifest or matching glob", param="input")


def output_name(input_path: str, taken: set[str]) -> str:
    """`<stem>`, or `<stem>-2`, `<stem>-3`... when another input already has that stem."""
    stem = Path(input_path).stem
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    return name


def _manifest(path: Path) -> BatchInputs:
    import csv
    import json

    out = BatchInputs([])
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", errors="replace", newline="") as f:
            rows = [(n, r) for n, r in enumerate(csv.DictReader(f), start=2)]
    else:
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            if path.suffix == ".txt":
                rows.append((n, {"path": line.strip()}))
                continue
            try:
                rows.append((n, json.loads(line)))
            except ValueError:
                out.problems.append(f"{path.name} line {n}: not JSON")
    for n, row in rows:
        if not isinstance(row, dict) or not row.get("path"):
            out.problems.append(f"{path.name} line {n}: no path")
            continue
        clip = Path(row["path"])
        out.paths.append(str((clip if clip.is_absolute() else path.parent / clip).resolve()))
    return out


def _checked(spec: str, inputs: BatchInputs) -> BatchInputs:
    if not inputs.paths:
        detail = f" ({inputs.problems[0]})" if inputs.problems else ""
        raise InvalidOptionError(f"{spec}: no audio inputs found{detail}", param="input")
    return inputs
