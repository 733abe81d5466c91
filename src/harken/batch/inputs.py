"""What a batch runs over: a folder (recursively), a glob, or a manifest of paths.

A manifest row may also set the row's own work with the command's option names: `task`
(transcribe, translate, caption, ask, analyze, diarize), `language`, `question`, `schema`. An evaluation
manifest's `task` (asr, exact, lid, classify, sound, diar) says what `harken eval` scores the row for;
a batch runs its own task on such a row. Each distinct (path, work) is one item; a row that
repeats an earlier one is reported and run once.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path

from harken.errors import InvalidOptionError
from harken.inputs import MEDIA_SUFFIXES, unique_stem

__all__ = ["BatchInputs", "BatchRow", "TASKS", "TASK_OPTIONS", "expand_inputs", "output_name"]

TASKS = ("transcribe", "translate", "caption", "ask", "analyze", "diarize")
ROW_FIELDS = ("task", "language", "question", "schema")  # what a manifest row may set for itself
TASK_OPTIONS = {"transcribe": ("language",), "translate": ("language",), "caption": (), "ask": ("question",),
                "analyze": ("schema",), "diarize": ()}
_EVAL_TASKS = ("asr", "exact", "lid", "classify", "sound", "diar")


@dataclass(frozen=True)
class BatchRow:
    path: str
    work: str = ""  # the row's own fields (canonical JSON), over the command's; "" when it has none
    origin: str = field(default="", compare=False)  # where it was listed, for messages

    @property
    def fields(self) -> dict[str, str]:
        return json.loads(self.work) if self.work else {}


@dataclass
class BatchInputs:
    rows: list[BatchRow]
    problems: list[str] = field(default_factory=list)  # bad manifest lines: reported, never silently dropped

    @classmethod
    def of(cls, paths: list[str]) -> BatchInputs:
        return cls([BatchRow(p) for p in paths])

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.rows]


def expand_inputs(spec: str) -> BatchInputs:
    path = Path(spec)
    if path.is_dir():
        found = [str(p.resolve()) for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES]
        return _checked(spec, BatchInputs.of(found))
    if path.is_file() and path.suffix in (".jsonl", ".csv", ".txt"):
        return _checked(spec, _manifest(path))
    if any(c in spec for c in "*?["):
        return _checked(spec, BatchInputs.of([str(Path(p).resolve()) for p in sorted(glob.glob(spec, recursive=True))
                                              if Path(p).is_file()]))
    if path.is_file():
        return BatchInputs.of([str(path.resolve())])
    raise InvalidOptionError(f"{spec}: no such folder, file, manifest or matching glob", param="input")


def output_name(input_path: str, taken: set[str]) -> str:
    """`<stem>`, or `<stem>-2`, `<stem>-3`... when another input already has that stem."""
    return unique_stem(Path(input_path).stem, taken)


def _manifest(path: Path) -> BatchInputs:
    import csv

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
        where = f"{path.name} line {n}"
        if not isinstance(row, dict) or not row.get("path"):
            out.problems.append(f"{where}: no path")
            continue
        own = {k: row[k].strip() for k in ROW_FIELDS if isinstance(row.get(k), str) and row[k].strip()}
        if own.get("task") in _EVAL_TASKS:
            del own["task"]
        elif "task" in own and own["task"] not in TASKS:
            out.problems.append(f"{where}: task must be one of {', '.join(TASKS)}, not {own['task']!r}")
            continue
        elif "task" in own:  # what the named task does not take is the row's metadata, not its work
            own = {k: v for k, v in own.items() if k == "task" or k in TASK_OPTIONS[own["task"]]}
        clip = Path(row["path"])
        resolved = str((clip if clip.is_absolute() else path.parent / clip).resolve())
        out.rows.append(BatchRow(resolved, json.dumps(own, sort_keys=True) if own else "", where))
    return out


def _checked(spec: str, inputs: BatchInputs) -> BatchInputs:
    if not inputs.rows:
        detail = f" ({inputs.problems[0]})" if inputs.problems else ""
        raise InvalidOptionError(f"{spec}: no audio inputs found{detail}", param="input")
    # The same file with the same work (a manifest's asr and lid rows for one clip, two links to
    # one file) is one item: said once here, run once.
    first: dict[BatchRow, BatchRow] = {}
    for row in inputs.rows:
        if row in first and row.origin:
            inputs.problems.append(f"{row.origin}: {row.path} is already on {first[row].origin} with the same work; it runs once")
        elif row in first:
            inputs.problems.append(f"{row.path}: named twice (two links to one file); it runs once")
        else:
            first[row] = row
    inputs.rows = list(first)
    return inputs
