"""Reports: JSON for programs, and one self-contained HTML page for people: the summary, charts,
and every clip side by side with the words each model got wrong marked and the clip playable.

The page loads nothing from anywhere: styles and the few lines of sorting script are inline,
charts are plain HTML bars (a label per row, so labels never overlap), and the players point
at the clips by a path relative to the page (file:// where none exists) instead of embedding them.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from harken.diarization import parse_rttm
from harken.evaluation import metrics
from harken.evaluation.run import EvalReport
from harken.files import write_atomic

__all__ = ["write_json", "write_html", "comparison"]

_COLOURS = ("#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e")
_WORST = 30  # clips in the per-clip WER chart; the tables below have them all
# Summary columns: (key, heading, how it is shown)
_PERCENT, _SECONDS, _PLAIN = "percent", "seconds", "plain"
_SUMMARY = (("count", "clips", _PLAIN), ("failed", "failed", _PLAIN), ("cached", "cached", _PLAIN),
            ("wer", "WER", _PERCENT), ("cer", "CER", _PERCENT), ("der", "DER", _PERCENT), ("missed", "missed", _PERCENT),
            ("false_alarm", "false alarm", _PERCENT), ("speaker_confusion", "confusion", _PERCENT),
            ("speaker_count_accuracy", "speaker count right", _PERCENT), ("accuracy", "accuracy", _PERCENT),
            ("macro_f1", "macro-F1", _PERCENT), ("precision", "precision", _PERCENT), ("recall", "recall", _PERCENT),
            ("f1", "F1", _PERCENT), ("latency_mean_s", "latency mean", _SECONDS), ("latency_p50_s", "p50", _SECONDS),
            ("latency_p95_s", "p95", _SECONDS), ("rtf", "RTF", _PLAIN))
# A diarization score's parts, as charts and clips name them
_DER_PARTS = (("der", "DER"), ("missed", "missed"), ("false_alarm", "false alarm"), ("speaker_confusion", "confusion"))


def write_json(reports: list[EvalReport], path: Path) -> None:
    data = reports[0].to_dict() if len(reports) == 1 else {"models": [r.to_dict() for r in reports],
                                                           "differences": comparison(reports)}
    write_atomic(path, json.dumps(data, ensure_ascii=False, indent=2))


def comparison(reports: list[EvalReport]) -> list[dict]:
    """Clips on which the models' scores differ, with every model's hypothesis."""
    key = _score_key(reports[0].task)
    return [{"path": reports[0].details[i]["path"], "reference": reports[0].details[i]["reference"],
             **{r.model: {"hypothesis": r.details[i].get("hypothesis"), key: r.details[i].get(key)} for r in reports}}
            for i in _differing(reports)]


def write_html(reports: list[EvalReport], path: Path) -> None:
    first = reports[0]
    base = Path(path).resolve().parent
    count = len(first.details)
    models = ", ".join(r.model for r in reports)
    normaliser = f"; normaliser {html.escape(str(first.options.get('normalizer')))}" if first.task in ("asr", "exact") else ""
    if first.task == "diar":
        collar = float(first.options.get("collar_s") or 0.0)
        normaliser = f"; collar {collar:g} s (&plusmn;{collar / 2:g} s around each reference boundary), overlap scored"
    parts = [f"<h1>harken evaluation: {html.escape(first.task)} on {html.escape(first.dataset)}</h1>",
             f"<p class=muted>{count} clips; {html.escape(models)}{normaliser}</p>",
             "<h2>Summary</h2>", _summary_table(reports), "<h2>Charts</h2>", _charts(reports)]
    if first.problems:
        parts.append("<h2>Dataset problems</h2><ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in first.problems) + "</ul>")
    if len(reports) > 1:
        differ = _differing(reports)
        parts.append(f"<h2>Clips where the models differ ({len(differ)} of {count})</h2>")
        if differ:
            differ.sort(key=lambda i: -_spread(reports, i))  # the widest disagreement first
            parts.append("<p class=muted>Most different first; click a column heading to sort by it.</p>")
            parts.append(_clip_table(reports, differ, base, "differ"))
        else:
            parts.append("<p>The models score every clip the same.</p>")
        parts.append(f"<details><summary>All {count} clips</summary>{_clip_table(reports, list(range(count)), base, 'all')}</details>")
    else:
        parts.append(f"<h2>All {count} clips</h2><p class=muted>Click a column heading to sort by it.</p>")
        parts.append(_clip_table(reports, list(range(count)), base, "all"))
    page = ("<!doctype html><html lang=en><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>harken evaluation: {html.escape(first.task)}</title><style>{_STYLE}</style>"
            f"<body>{''.join(parts)}<script>{_SCRIPT}</script></body></html>")
    write_atomic(Path(path), page)


# --- pieces -----------------------------------------------------------------------------------

def _score_key(task: str) -> str:
    return {"asr": "wer", "exact": "match", "diar": "der"}.get(task, "correct")


def _differing(reports: list[EvalReport]) -> list[int]:
    key = _score_key(reports[0].task)
    return [i for i in range(len(reports[0].details)) if len({str(r.details[i].get(key)) for r in reports}) > 1]


def _spread(reports: list[EvalReport], i: int) -> float:
    values = [_sort_value(r.task, r.details[i]) for r in reports]
    known = [v for v in values if v is not None]
    return (max(known) - min(known) if known else 0.0) + (len(values) - len(known))  # a failure is the widest


def _sort_value(task: str, detail: dict) -> float | None:
    """A number to sort a clip by for one model: its WER or DER, or 0 for a match / correct answer and 1
    for a miss; None when the clip failed."""
    value = detail.get(_score_key(task))
    if value is None:
        return None
    if isinstance(value, bool):
        return 0.0 if value else 1.0
    return float(value)


def _summary_table(reports: list[EvalReport]) -> str:
    columns = [c for c in _SUMMARY if any(c[0] in r.summary for r in reports)]
    head = "<th>model</th>" + "".join(f"<th class=num>{label}</th>" for _, label, _ in columns)
    rows = "".join(
        f"<tr><td>{_swatch(n)}{html.escape(r.model)}</td>"
        + "".join(f"<td class=num>{_shown(r.summary.get(key), how)}</td>" for key, _, how in columns) + "</tr>"
        for n, r in enumerate(reports)
    )
    note = ""
    if any(r.summary.get("cached") for r in reports):
        note = ("<p class=muted>Cached clips came from the result cache: their time is the cache's, so they are "
                "left out of latency and RTF (a dash: no clip was timed; <code>--no-cache</code> times them all).</p>")
    return f"<table class=summary><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{note}"


def _shown(value, how: str) -> str:
    if value is None:
        return "<span class=muted title='nothing was timed'>&ndash;</span>"
    if how == _PERCENT:
        return f"{value * 100:.1f}&thinsp;%"
    if how == _SECONDS:
        return f"{value:.3f}&thinsp;s"
    return f"{value:.3g}" if isinstance(value, float) else html.escape(str(value))


def _charts(reports: list[EvalReport]) -> str:
    first = reports[0]
    out = []
    if first.task in ("asr", "exact"):
        rows = [(r.model, [(n, r.summary.get("wer"), "WER"), (n, r.summary.get("cer"), "CER")]) for n, r in enumerate(reports)]
        out.append(_bars("Corpus WER and CER by model", rows, percent=True))
        out += _per_clip(reports, "wer", "WER")
    elif first.task == "diar":
        rows = [(r.model, [(n, r.summary.get(k), tag) for k, tag in _DER_PARTS]) for n, r in enumerate(reports)]
        out.append(_bars("Pooled DER and its parts by model", rows, percent=True))
        out += _per_clip(reports, "der", "DER")
    else:
        rows = [(r.model, [(n, r.summary.get("accuracy"), "accuracy")]) for n, r in enumerate(reports)]
        out.append(_bars("Accuracy by model", rows, percent=True))
        out += [_confusion(r, n) for n, r in enumerate(reports) if "confusion" in r.summary]
    rows = [(r.model, [(n, r.summary.get("latency_p50_s"), "p50"), (n, r.summary.get("latency_p95_s"), "p95")])
            for n, r in enumerate(reports)]
    out.append(_bars("Latency per clip (p50, p95)", rows, percent=False))
    legend = "".join(f"{_swatch(n)}{html.escape(r.model)} " for n, r in enumerate(reports))
    return f"<p class=muted>{legend}</p><div class=charts>" + "".join(out) + "</div>"


def _per_clip(reports: list[EvalReport], key: str, name: str) -> list[str]:
    """A chart of the clips with the highest `key` (WER, DER) by any model, or none if no clip scored."""
    details = reports[0].details
    shown = sorted(range(len(details)), key=lambda i: -max((r.details[i].get(key) or 0.0) for r in reports))
    shown = [i for i in shown if any(r.details[i].get(key) is not None for r in reports)][:_WORST]
    if not shown:
        return []
    title = f"{name} per clip" + (f" (the {len(shown)} worst of {len(details)})" if len(details) > len(shown) else "")
    rows = [(Path(details[i]["path"]).name, [(n, r.details[i].get(key), "") for n, r in enumerate(reports)]) for i in shown]
    return [_bars(title, rows, percent=True)]


def _bars(title: str, rows: list[tuple[str, list[tuple[int, float | None, str]]]], *, percent: bool) -> str:
    """A horizontal bar chart: one labelled row per entry, one bar per (model, value, tag)."""
    top = max((v for _, bars in rows for _, v, _ in bars if v is not None), default=0.0) or 1.0
    body = []
    for label, bars in rows:
        cells = []
        for n, value, tag in bars:
            if value is None:
                cells.append(f"<div class=bar><span class=muted>{html.escape(tag)} &ndash; not timed</span></div>")
                continue
            text = f"{value * 100:.1f} %" if percent else f"{value:.3f} s"
            width = max(0.5, 100 * value / top)
            cells.append(f"<div class=bar><b><i style='width:{width:.1f}%;background:{_colour(n)}'></i></b>"
                         f"<span>{html.escape(tag + ' ' if tag else '')}{text}</span></div>")
        body.append(f"<div class=row><div class=label title='{html.escape(label)}'>{html.escape(label)}</div>"
                    f"<div class=bars>{''.join(cells)}</div></div>")
    return f"<figure class=chart><figcaption>{html.escape(title)}</figcaption>{''.join(body)}</figure>"


def _confusion(report: EvalReport, n: int) -> str:
    labels, matrix = report.summary["labels"], report.summary["confusion"]
    top = max((c for row in matrix for c in row), default=0) or 1
    head = "<th>reference \\ predicted</th>" + "".join(f"<th>{html.escape(str(x))}</th>" for x in labels)
    rows = "".join(
        f"<tr><th>{html.escape(str(labels[i]))}</th>"
        + "".join(f"<td class=num style='background:rgba(9,105,218,{0.08 + 0.6 * c / top:.2f})'>{c}</td>" for c in row) + "</tr>"
        for i, row in enumerate(matrix)
    )
    return (f"<figure class=chart><figcaption>{_swatch(n)}{html.escape(report.model)}: confusion matrix</figcaption>"
            f"<table class=confusion>{head}{rows}</table></figure>")


def _clip_table(reports: list[EvalReport], rows: list[int], base: Path, name: str) -> str:
    keys = [_word_key(metrics.normaliser(str(r.options.get("normalizer") or "none"))) for r in reports]
    width = f"calc((100% - 220px) / {len(reports) + 1})"
    cols = "<col class=clip>" + "".join(f"<col style='width:{width}'>" for _ in range(len(reports) + 1))
    head = ("<th data-col=0 aria-sort=none><button>clip</button></th><th>reference</th>"
            + "".join(f"<th data-col={n + 1} aria-sort=none><button>{_swatch(n)}{html.escape(r.model)}</button></th>"
                      for n, r in enumerate(reports)))
    body = []
    for i in rows:
        detail = reports[0].details[i]
        clip = Path(detail["path"])
        sort_keys = [f"data-k0='{html.escape(clip.name)}'"]
        cells = []
        for n, r in enumerate(reports):
            d = r.details[i]
            value = _sort_value(r.task, d)
            sort_keys.append(f"data-k{n + 1}='{'' if value is None else value}'")
            cells.append(f"<td>{_hypothesis(r.task, d, keys[n])}</td>")
        body.append(
            f"<tr {' '.join(sort_keys)}><td class=clip><div class=name title='{html.escape(str(clip))}'>{html.escape(clip.name)}</div>"
            f"<audio controls preload=none src='{html.escape(_audio_src(clip, base))}'></audio></td>"
            f"<td>{_reference(reports[0].task, detail)}</td>{''.join(cells)}</tr>"
        )
    key = "" if reports[0].task == "diar" else _KEY
    return f"{key}<table class=clips data-name={name}><colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _reference(task: str, detail: dict) -> str:
    """The reference as a person reads it: the text, or for diarization what its RTTM holds
    (the RTTM itself is in the JSON report)."""
    if task != "diar":
        return html.escape(detail["reference"])
    return html.escape(_turns_summary(detail["reference"]))


def _turns_summary(rttm_text: str) -> str:
    turns = [t for ts in parse_rttm(rttm_text).values() for t in ts]
    speakers = len({t.speaker for t in turns})
    return (f"{speakers} speaker{'s' * (speakers != 1)}, {len(turns)} turn{'s' * (len(turns) != 1)} "
            f"totalling {sum(t.end - t.start for t in turns):.1f} s")


def _hypothesis(task: str, detail: dict, key: Callable[[str], str]) -> str:
    if detail.get("error") is not None:
        return f"<span class=err>failed: {html.escape(detail['error']['message'])}</span>"
    hypothesis = str(detail.get("hypothesis"))
    if task == "diar":
        found, wanted = detail["found_speakers"], detail["reference_speakers"]
        parts = ", ".join(f"{tag} {detail[k] * 100:.1f} %" for k, tag in _DER_PARTS[1:])
        text = (f"found {found} speaker{'s' * (found != 1)} (reference {wanted}); {parts}"
                f"<div class=muted>{html.escape(_turns_summary(hypothesis))}</div>")
        score, good = f"DER {detail['der'] * 100:.1f} %", detail["der"] == 0
    elif task in ("asr", "exact"):
        text = _word_diff(detail["reference"], hypothesis, key)
        score = (f"WER {detail['wer'] * 100:.1f} %" if task == "asr" else "match" if detail.get("match") else "miss")
        good = detail.get("wer") == 0 if task == "asr" else bool(detail.get("match"))
    else:
        good = bool(detail.get("correct"))
        text = html.escape(hypothesis) if good else f"<ins>{html.escape(hypothesis)}</ins>"
        score = "correct" if good else "wrong"
    cached = " <span class=muted title='from the result cache'>cached</span>" if detail.get("cached") else ""
    return f"<span class='score {'good' if good else 'bad'}'>{score}</span>{cached}<div class=hyp>{text}</div>"


def _word_key(norm: Callable[[str], str]) -> Callable[[str], str]:
    """What two words are compared by: the report's normaliser on the word alone (one token, so
    "Americans," and "americans" are the same word, as WER counts them)."""
    return lambda word: "_".join(norm(word).split())


def _word_diff(reference: str, hypothesis: str, key: Callable[[str], str]) -> str:
    """The hypothesis as written, with reference words it lacks in <del> and its own wrong or extra
    words in <ins>, from a word alignment (jiwer's) of the normalised words. Words that normalise
    to nothing (a lone dash) are shown plainly and take no part."""
    ref, hyp = reference.split(), hypothesis.split()
    rk = [(i, k) for i, w in enumerate(ref) if (k := key(w))]
    hk = [(j, k) for j, w in enumerate(hyp) if (k := key(w))]
    out: list[str] = []
    shown = 0  # hypothesis words written so far

    def plain(upto: int) -> None:
        nonlocal shown
        if upto > shown:
            out.append(html.escape(" ".join(hyp[shown:upto])))
            shown = upto

    def changed(r0: int, r1: int, h0: int, h1: int) -> None:
        nonlocal shown
        if h1 > h0:
            plain(hk[h0][0])
        if r1 > r0:
            out.append(f"<del>{html.escape(' '.join(ref[rk[r0][0]:rk[r1 - 1][0] + 1]))}</del>")
        if h1 > h0:
            out.append(f"<ins>{html.escape(' '.join(hyp[hk[h0][0]:hk[h1 - 1][0] + 1]))}</ins>")
            shown = hk[h1 - 1][0] + 1

    run: list[int] | None = None  # neighbouring edits merged: "~~woodcutters~~ wood cutters", not three marks
    for kind, r0, r1, h0, h1 in _align([k for _, k in rk], [k for _, k in hk]):
        if kind != "equal":
            run = [r0, r1, h0, h1] if run is None else [run[0], r1, run[2], h1]
            continue
        if run is not None:
            changed(*run)
            run = None
        plain(hk[h0][0])
        plain(hk[h1 - 1][0] + 1)
    if run is not None:
        changed(*run)
    plain(len(hyp))
    return " ".join(out) + ("" if hyp else " <span class=muted>(no words)</span>")


def _align(ref: list[str], hyp: list[str]) -> list[tuple[str, int, int, int, int]]:
    if not ref or not hyp:  # jiwer refuses an empty side; the alignment is all one kind
        return ([("delete", 0, len(ref), 0, 0)] if ref else []) + ([("insert", 0, 0, 0, len(hyp))] if hyp else [])
    import jiwer

    chunks = jiwer.process_words(" ".join(ref), " ".join(hyp)).alignments[0]
    return [(c.type, c.ref_start_idx, c.ref_end_idx, c.hyp_start_idx, c.hyp_end_idx) for c in chunks]


def _audio_src(clip: Path, base: Path) -> str:
    """The clip relative to the page, so the folder can move with its data; file:// if there is no
    relative path (another drive)."""
    target = clip.resolve()
    try:
        return quote(Path(os.path.relpath(target, base)).as_posix())
    except ValueError:
        return target.as_uri()


def _colour(n: int) -> str:
    return _COLOURS[n % len(_COLOURS)]


def _swatch(n: int) -> str:
    return f"<i class=swatch style='background:{_colour(n)}'></i>"


_KEY = ("<p class=muted>In each hypothesis, <del>struck</del> words are the reference's that the model missed and "
        "<ins>marked</ins> words are what it wrote instead or besides, compared after normalising.</p>")

_STYLE = """
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--soft:#f6f8fa}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;color:var(--fg);
  max-width:1320px;margin:0 auto;padding:12px 20px 40px}
h1{font-size:20px;margin:8px 0 2px;overflow-wrap:anywhere}
h2{font-size:16px;margin:26px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
p{margin:6px 0}.muted{color:var(--muted)}code{background:var(--soft);padding:0 3px;border-radius:3px}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid var(--line);padding:6px 8px;text-align:left;vertical-align:top}
thead th{background:var(--soft);position:sticky;top:0;z-index:1}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.summary{width:auto;min-width:60%}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:baseline}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(400px,1fr));gap:14px 28px}
figure.chart{margin:0}
figcaption{font-weight:600;margin-bottom:6px}
.row{display:grid;grid-template-columns:170px 1fr;gap:10px;align-items:center;padding:3px 0;border-bottom:1px solid var(--soft)}
.label{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-size:13px}
.bar{display:grid;grid-template-columns:1fr 96px;align-items:center;gap:6px;height:17px;line-height:17px;font-size:12px;white-space:nowrap}
.bar b{display:block}.bar i{display:block;height:11px;border-radius:2px}

table.confusion{width:auto}table.confusion td,table.confusion th{border:1px solid var(--line);text-align:center}
table.clips{table-layout:fixed}
col.clip{width:220px}
td.clip .name{font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;margin-bottom:4px}
audio{width:200px;height:32px}
th button{font:inherit;font-weight:600;border:0;background:none;padding:0;cursor:pointer;color:inherit;text-align:left}
th[aria-sort=ascending] button::after{content:" \\25B2"}th[aria-sort=descending] button::after{content:" \\25BC"}
th[aria-sort=none] button::after{content:" \\21C5";color:var(--muted)}
.hyp{margin-top:3px;overflow-wrap:anywhere}
del{background:#ffebe9;color:#82071e;text-decoration:line-through;border-radius:2px;padding:0 1px}
ins{background:#dafbe1;color:#116329;text-decoration:none;border-radius:2px;padding:0 1px;font-weight:600}
.score{font-size:12px;font-weight:600;padding:0 6px;border-radius:8px;white-space:nowrap}
.score.good{background:#dafbe1;color:#116329}.score.bad{background:#fff1e5;color:#953800}
.err{color:#cf222e}
details>summary{cursor:pointer;font-weight:600;margin:14px 0 8px}
"""

# Sorting: a click on a heading orders the rows by that column's data-k value (numbers as
# numbers, a failed clip last), again to reverse.
_SCRIPT = """
document.querySelectorAll("table.clips").forEach(function (table) {
  table.querySelectorAll("th[data-col]").forEach(function (th) {
    th.addEventListener("click", function () {
      var col = th.dataset.col, up = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th[data-col]").forEach(function (o) { o.setAttribute("aria-sort", "none"); });
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row) { var v = row.dataset["k" + col]; return v === "" ? null : isNaN(+v) ? v : +v; }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) return x === y ? 0 : x === null ? 1 : -1;
        var c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return up ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""
