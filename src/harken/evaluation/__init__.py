"""Evaluate any model harken can run on labelled audio: datasets, metrics, reports."""

from harken.evaluation.datasets import Dataset, Example, load_dataset
from harken.evaluation.run import TASKS, EvalReport, evaluate

__all__ = ["Dataset", "Example", "EvalReport", "TASKS", "evaluate", "evaluate_folder", "load_dataset"]


def evaluate_folder(audio_dir, gt_dir, model=None, max_new_tokens=None, match_mode="wer", *, guard=None, **kwargs) -> EvalReport:
    """Score `model` on audio_dir/ with one `<stem>.txt` label per clip in gt_dir/.
    match_mode "wer" (the default, task asr as in `harken eval` and `POST /evaluate`) reports WER
    and CER; "exact" reports exact-match counts (and WER).
    Every file is opened through `guard` (a harken.files.PathGuard; default: any regular file)."""
    from harken.errors import InvalidOptionError

    if match_mode not in ("exact", "wer"):
        raise InvalidOptionError(f"match_mode must be exact or wer, not {match_mode!r}", param="match_mode")
    task = "exact" if match_mode == "exact" else "asr"
    dataset = load_dataset(audio_dir, gt_dir, guard=guard)
    return evaluate(dataset, model=model, task=task, max_new_tokens=max_new_tokens, guard=guard, **kwargs)
