"""Reports: JSON for programs, a self-contained HTML page with matplotlib plots for people."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from harken.evaluation.run import EvalReport
from harken.files import write_atomic

__all__ = ["write_json", "write_html", "comparison"]

_SUMMARY_KEYS = ("count", "failed", "wer", "cer", "accuracy", "macro_f1", "precision", "recall", "f1",
                 "latency_mean_s", "latency_p50_s", "latency_p95_s", "rtf")


def write_json(reports: list[EvalReport], path: Path) -> None:
    data = reports[0].to_dict() if len(reports) == 1 else {"models": [r.to_dict() for r in reports],
                                                           "differences": comparison(reports)}
    write_atomic(path, json.dumps(data, ensure_ascii=False, indent=2))


def comparison(reports: list[EvalReport]) -> list[dict]:
    """Clips on which the models' scores differ, with every model's hypothesis."""
    key = {"asr": "wer", "exact": "match"}.get(reports[0].task, "correct")
    rows = []
    for i, detail in enumerate(reports[0].details):
        scores = [r.details[i].get(key) for r in reports]
        if len(set(map(str, scores))) > 1:
            rows.append({"path": detail["path"], "reference": detail["reference"],
                         **{r.model: {"hypothesis": r.details[i].get("hypothesis"), key: r.details[i].get(key)} for r in reports}})
    return rows


def write_html(reports: list[EvalReport], path: Path) -> None:
    parts = [f"<h1>harken evaluation: {html.escape(reports[0].task)} on {html.escape(reports[0].dataset)}</h1>",
             _summary_table(reports)]
    for report in reports:
        parts.append(f"<h2>{html.escape(report.model)}</h2>")
        parts += [f'<img alt="{html.escape(title)}" src="data:image/png;base64,{png}">' for title, png in _plots(report)]
        if report.problems:
            parts.append("<h3>Dataset problems</h3><ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in report.problems) + "</ul>")
        parts.append(_details_table(report))
    if len(reports) > 1:
        parts.append("<h2>Clips where the models differ</h2><pre>" + html.escape(json.dumps(comparison(reports), indent=2, ensure_ascii=False)) + "</pre>")
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}"
    write_atomic(path, f"<!doctype html><meta charset='utf-8'><title>harken evaluation</title><style>{style}</style>" + "".join(parts))


def _summary_table(reports: list[EvalReport]) -> str:
    keys = [k for k in _SUMMARY_KEYS if any(k in r.summary for r in reports)]
    head = "".join(f"<th>{k}</th>" for k in ["model", *keys])
    rows = "".join(
        "<tr><td>" + html.escape(r.model) + "</td>" + "".join(f"<td>{_fmt(r.summary.get(k))}</td>" for k in keys) + "</tr>"
        for r in reports
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def _details_table(report: EvalReport) -> str:
    key = {"asr": "wer", "exact": "match"}.get(report.task, "correct")
    rows = "".join(
        f"<tr><td>{html.escape(Path(d['path']).name)}</td><td>{html.escape(d['reference'])}</td>"
        f"<td>{html.escape(str(d.get('hypothesis') if d.get('error') is None else 'error: ' + d['error']['message']))}</td>"
        f"<td>{_fmt(d.get(key))}</td></tr>"
        for d in report.details
    )
    return f"<table><tr><th>clip</th><th>reference</th><th>hypothesis</th><th>{key}</th></tr>{rows}</table>"


def _plots(report: EvalReport) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    out = []
    scored = [d for d in report.details if d.get("timings")]
    if report.task == "asr" and scored:
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.bar([Path(d["path"]).stem[:14] for d in scored], [d["wer"] for d in scored])
        ax.set_ylabel("WER")
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
        out.append(("per-file WER", _png(fig)))
    if "confusion" in report.summary:
        labels, matrix = report.summary["labels"], report.summary["confusion"]
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=60)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("reference")
        for i, row in enumerate(matrix):
            for j, n in enumerate(row):
                ax.text(j, i, str(n), ha="center", va="center")
        out.append(("confusion matrix", _png(fig)))
    if scored:
        fig, ax = plt.subplots(figsize=(6, 2.5))
        ax.hist([d["timings"]["total_s"] for d in scored], bins=min(20, len(scored)))
        ax.set_xlabel("latency per clip (s)")
        out.append(("latency", _png(fig)))
    return out


def _png(fig) -> str:
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value)) if value is not None else ""

