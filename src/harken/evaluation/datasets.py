"""Labelled audio in four layouts: a folder pair, a diarization folder, a JSON-lines manifest, a CSV.

- folder pair: audio files in one folder (searched recursively) and one UTF-8 `.txt` per clip,
  with the same stem, in another (DATA/audio + DATA/labels, or two folders given apart); a
  multi-line label is joined with spaces;
- diarization folder: audio files (searched recursively) with a same-stem `.rttm` reference
  beside each, and optionally a `.uem` that limits scoring to its regions (task `diar`);
- JSON lines: one object per line with `path` (absolute or relative to the manifest),
  `reference`, and optionally `task` and `language`; a `diar` row's reference is RTTM text,
  and its optional `uem` is UEM text;
- CSV with the same columns and a header row.

What cannot be used (a clip without a label, a label without a clip, a bad line, a label that
is not UTF-8, a file that is not a regular file or lies outside the guard's roots) is reported
in `problems` and skipped; only a dataset with nothing usable, or a missing folder or file, is
an error. Every file is opened through a `PathGuard`: the server's confines a dataset to its
allowed roots, symlinks included.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from harken.diarization import parse_rttm
from harken.errors import ForbiddenError, InvalidOptionError, PayloadTooLargeError
from harken.files import PathGuard, describe_os_error
from harken.inputs import AUDIO_SUFFIXES
from harken.results import SpeakerTurn

__all__ = ["Example", "Dataset", "load_dataset", "AUDIO_SUFFIXES", "reference_turns", "scored_regions"]

DIAR = "diar"  # the task of a diarization clip: its reference is RTTM text


@dataclass(frozen=True)
class Example:
    path: Path
    reference: str
    task: str | None = None
    language: str | None = None
    uem: str | None = None  # diarization only: UEM text, the regions scored (None: the whole clip)

    @property
    def id(self) -> str:
        return self.path.name


@dataclass
class Dataset:
    source: str
    examples: list[Example]
    problems: list[str] = field(default_factory=list)


def load_dataset(data: str | Path, labels: str | Path | None = None, *, guard: PathGuard | None = None) -> Dataset:
    """A dataset from a folder pair, a diarization folder, a .jsonl manifest or a .csv (see the module notes)."""
    guard = guard or PathGuard()
    path = Path(data)
    if labels is not None:
        return _checked(_folder_pair(path, Path(labels), guard))
    if path.is_dir():
        audio, gt = path / "audio", path / "labels"
        if not (audio.is_dir() and gt.is_dir()):
            for manifest in ("manifest.jsonl", "manifest.csv"):
                if (path / manifest).is_file():
                    return load_dataset(path / manifest, guard=guard)
            if any(path.rglob("*.rttm")):
                return _checked(_diar_folder(path, guard))
            raise InvalidOptionError(
                f"{path} has neither audio/ and labels/ folders, a manifest, nor .rttm references beside its audio",
                param="data",
            )
        return _checked(_folder_pair(audio, gt, guard))
    if not path.exists():
        raise InvalidOptionError(f"{path}: no such file or folder", param="data")
    if path.suffix in (".jsonl", ".csv"):
        text, problem = _read_text(path, guard, errors="replace")
        if problem is not None:
            raise InvalidOptionError(f"{path.name}: {problem}", param="data")
        return _checked(_manifest(path, _jsonl_rows(text) if path.suffix == ".jsonl" else _csv_rows(text)))
    raise InvalidOptionError(f"{path.name}: a dataset is a folder, a .jsonl manifest or a .csv", param="data")


def _checked(dataset: Dataset) -> Dataset:
    if not dataset.examples:
        detail = f" ({dataset.problems[0]})" if dataset.problems else ""
        raise InvalidOptionError(f"{dataset.source}: the dataset has no usable clips{detail}", param="data")
    return dataset


def _read_text(path: Path, guard: PathGuard, *, errors: str = "strict") -> tuple[str, None] | tuple[None, str]:
    """(the UTF-8 text of a file the guard lets through, None), or (None, why it cannot be had)."""
    try:
        return guard.read(path).decode("utf-8", errors=errors), None
    except OSError as exc:
        return None, describe_os_error(exc)
    except ForbiddenError:
        return None, "outside the allowed media roots"
    except PayloadTooLargeError:
        return None, "too large"
    except UnicodeDecodeError:
        return None, "not UTF-8 text"


def _folder_pair(audio_dir: Path, label_dir: Path, guard: PathGuard) -> Dataset:
    for folder, what in ((audio_dir, "audio"), (label_dir, "labels")):
        if not folder.is_dir():
            raise InvalidOptionError(f"{what} folder not found: {folder}", param="data")
    clips = {p.stem: p for p in sorted(audio_dir.rglob("*")) if p.suffix.lower() in AUDIO_SUFFIXES}
    texts = {p.stem: p for p in sorted(label_dir.rglob("*.txt"))}
    dataset = Dataset(str(audio_dir), [])
    for stem, clip in clips.items():
        if stem not in texts:
            dataset.problems.append(f"{clip.name}: no label file {stem}.txt")
            continue
        text, problem = _read_text(texts[stem], guard)
        if problem is not None:
            dataset.problems.append(f"{texts[stem].name}: {problem}")
            continue
        dataset.examples.append(Example(clip, " ".join(line.strip() for line in text.splitlines()).strip()))
    dataset.problems += [f"{texts[s].name}: no audio clip" for s in texts if s not in clips]
    return dataset


def _diar_folder(folder: Path, guard: PathGuard) -> Dataset:
    """Each clip scored against the `.rttm` beside it, within the `.uem` beside it if there is one."""
    clips = [p for p in sorted(folder.rglob("*")) if p.suffix.lower() in AUDIO_SUFFIXES]
    dataset = Dataset(str(folder), [])
    for clip in clips:
        beside = {what: clip.with_suffix(f".{what.lower()}") for what in ("RTTM", "UEM")}
        if not beside["RTTM"].is_file():
            dataset.problems.append(f"{clip.name}: no reference {beside['RTTM'].name} beside it")
            continue
        texts: dict[str, str | None] = {"RTTM": None, "UEM": None}
        for what, file in beside.items():
            if what == "UEM" and not file.exists():
                continue
            texts[what], problem = _read_text(file, guard)
            if problem is not None:
                dataset.problems.append(f"{file.name}: {problem}")
                break
        else:
            example = Example(clip, texts["RTTM"] or "", DIAR, None, texts["UEM"])
            if (bad := _diar_problem(example)) is not None:
                dataset.problems.append(f"{beside[bad[0]].name}: {bad[1]}")
                continue
            dataset.examples.append(example)
    stems = {c.with_suffix("") for c in clips}
    dataset.problems += [f"{p.name}: no audio clip" for p in sorted(folder.rglob("*.rttm")) if p.with_suffix("") not in stems]
    return dataset


def reference_turns(example: Example) -> list[SpeakerTurn]:
    """The reference turns of a diarization clip: its RTTM's lines for the clip's stem, or for
    the RTTM's only file id when none has the stem (a reference kept beside or with its clip is
    that clip's, whatever the file was called when it was annotated)."""
    return _for_clip(parse_rttm(example.reference), example, "RTTM")


def scored_regions(example: Example) -> list[tuple[float, float]] | None:
    """The (start, end) seconds the UEM scores, by the same file-id rule as the RTTM; None
    without a UEM, which scores the whole clip."""
    if example.uem is None:
        return None
    by_file: dict[str, list[tuple[float, float]]] = {}
    for number, line in enumerate(example.uem.splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith(";;"):
            continue
        try:
            start, end = float(parts[2]), float(parts[3])
        except (IndexError, ValueError):
            raise InvalidOptionError(f"UEM line {number} is not 'file channel start end'") from None
        if not 0 <= start < end:
            raise InvalidOptionError(f"UEM line {number} has no region ({start:g} to {end:g} s)")
        by_file.setdefault(parts[0], []).append((start, end))
    return _for_clip(by_file, example, "UEM")


def _for_clip(by_file: dict, example: Example, what: str) -> list:
    stem = example.path.stem
    if stem in by_file:
        return by_file[stem]
    if len(by_file) == 1:
        return next(iter(by_file.values()))
    if not by_file:
        raise InvalidOptionError(f"the {what} has no lines to score against")
    raise InvalidOptionError(f"the {what} names {len(by_file)} files and none is {stem!r}")


def _diar_problem(example: Example) -> tuple[str, str] | None:
    """(RTTM or UEM, why) a diarization clip cannot be scored, or None. Checked as the dataset
    loads, so a malformed reference is one problem reported up front, not a failure per model; a
    reference with no SPEAKER lines is refused too, since DER has no reference speech to divide by."""
    for what, check in (("RTTM", reference_turns), ("UEM", scored_regions)):
        try:
            check(example)
        except InvalidOptionError as exc:
            return what, exc.message
    return None


def _jsonl_rows(text: str):
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            yield n, None, "not JSON"
            continue
        yield n, row if isinstance(row, dict) else None, None if isinstance(row, dict) else "not a JSON object"


def _csv_rows(text: str):
    for n, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
        yield n, row, None


def _manifest(path: Path, rows) -> Dataset:
    dataset = Dataset(str(path), [])
    for n, row, error in rows:
        if error or row is None:
            dataset.problems.append(f"{path.name} line {n}: {error or 'unreadable'}")
            continue
        missing = [k for k in ("path", "reference") if not row.get(k)]
        if missing:
            dataset.problems.append(f"{path.name} line {n}: missing {', '.join(missing)}")
            continue
        clip = Path(row["path"])
        clip = clip if clip.is_absolute() else path.parent / clip
        uem = row.get("uem") if isinstance(row.get("uem"), str) and row["uem"].strip() else None
        example = Example(clip, str(row["reference"]), row.get("task") or None, row.get("language") or None, uem)
        if example.task == DIAR and (bad := _diar_problem(example)) is not None:
            dataset.problems.append(f"{path.name} line {n}: {bad[1]}")
            continue
        dataset.examples.append(example)
    return dataset
