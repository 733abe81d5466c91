"""Evaluation on copies of the real recordings: datasets, metrics, reports, CLI and HTTP."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import httpx
import jiwer
import pytest
from whisper_normalizer.english import EnglishTextNormalizer

import harken
from harken import Settings
from harken.errors import InvalidOptionError
from harken.evaluation import evaluate, load_dataset
from harken.evaluation.metrics import classification, exact_match
from tests.live_server import live_server

ENGLISH = ["jfk.flac", "61-70968-0000.flac", "LJ001-0001.flac", "fleurs-en-003.ogg"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory, data_dir, references) -> tuple:
    """The folder-pair layout: audio/ and labels/, one label split over two lines."""
    root = tmp_path_factory.mktemp("pair")
    (root / "audio").mkdir()
    (root / "labels").mkdir()
    for name in ENGLISH:
        shutil.copy(data_dir / name, root / "audio" / name)
        words = references[name]["reference"].split()
        half = len(words) // 2
        (root / "labels" / f"{name.rsplit('.', 1)[0]}.txt").write_text(" ".join(words[:half]) + "\n" + " ".join(words[half:]) + "\n")
    return root, references


def test_reported_wer_matches_an_independent_jiwer(service, pair):
    root, _ = pair
    report = evaluate(root, model="tiny.en", service=service, use_cache=False)  # timed, whatever ran before
    norm = EnglishTextNormalizer()
    details = report.details
    expected = jiwer.wer([norm(d["reference"]) for d in details], [norm(d["hypothesis"]) for d in details])
    assert report.summary["wer"] == pytest.approx(expected) and 0 < report.summary["wer"] < 0.15
    assert report.summary["cer"] == pytest.approx(jiwer.cer([norm(d["reference"]) for d in details], [norm(d["hypothesis"]) for d in details]))
    for d in details:
        assert d["wer"] == pytest.approx(jiwer.wer(norm(d["reference"]), norm(d["hypothesis"])))
    assert report.summary["count"] == 4 and report.summary["latency_p95_s"] >= report.summary["latency_p50_s"] > 0
    assert report.summary["rtf"] > 0 and report.summary["cached"] == 0 and not report.problems


def test_exact_match_arithmetic():
    summary = exact_match([("Hello  World ", "hello world"), ("a cat", "a dog"), ("yes", "YES"), ("", "no")])
    assert (summary["count"], summary["tp"], summary["fp"], summary["fn"]) == (4, 2, 2, 2)
    assert summary["precision"] == summary["recall"] == summary["f1"] == pytest.approx(0.5)
    scores = classification([("dog", "dog"), ("rain", "dog"), ("rain", "rain"), ("dog", "rain"), ("rain", "rain")])
    assert scores["accuracy"] == pytest.approx(0.6) and scores["confusion"] == [[1, 1], [1, 2]]
    assert scores["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_every_layout_gives_the_same_clips(service, pair, tmp_path):
    root, refs = pair
    rows = [{"path": str(root / "audio" / n), "reference": refs[n]["reference"],
             "task": "asr", "language": "en"} for n in ENGLISH]
    jsonl = tmp_path / "set.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "audio").mkdir()
    shutil.copy(root / "audio" / "jfk.flac", tmp_path / "audio" / "relative.flac")
    csv = tmp_path / "set.csv"
    csv.write_text("path,reference,task,language\naudio/relative.flac,\"And so, my fellow Americans\",asr,en\n")
    by_layout = {
        "pair": evaluate(root, model="tiny.en", service=service),
        "split": evaluate(load_dataset(root / "audio", root / "labels"), model="tiny.en", service=service),
        "jsonl": evaluate(jsonl, model="tiny.en", service=service),
    }
    hyps = {k: sorted(d["hypothesis"] for d in r.details) for k, r in by_layout.items()}
    assert hyps["pair"] == hyps["split"] == hyps["jsonl"]
    assert by_layout["pair"].summary["wer"] == pytest.approx(by_layout["jsonl"].summary["wer"], abs=0.02)  # labels equal after normalising
    from_csv = evaluate(csv, model="tiny.en", task="exact", service=service)
    assert from_csv.details[0]["path"].endswith("relative.flac") and from_csv.summary["count"] == 1


def test_problems_are_reported_not_fatal(service, data_dir, tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "labels").mkdir()
    shutil.copy(data_dir / "jfk.flac", tmp_path / "audio" / "a.flac")
    shutil.copy(data_dir / "jfk.flac", tmp_path / "audio" / "unlabelled.flac")
    shutil.copy(data_dir / "jfk.flac", tmp_path / "audio" / "latin1.flac")
    (tmp_path / "audio" / "broken.wav").write_bytes(b"RIFF garbage")
    (tmp_path / "labels" / "a.txt").write_text("and so my fellow americans")
    (tmp_path / "labels" / "broken.txt").write_text("anything")
    (tmp_path / "labels" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "labels" / "orphan.txt").write_text("no clip")
    report = evaluate(tmp_path, model="tiny.en", task="exact", service=service)
    assert sorted(report.problems) == sorted(["unlabelled.flac: no label file unlabelled.txt",
                                              "latin1.txt: not UTF-8 text", "orphan.txt: no audio clip"])
    broken = next(d for d in report.details if d["path"].endswith("broken.wav"))
    assert broken["error"]["type"] == "unsupported_audio" and report.summary["failed"] == 1
    assert report.summary["count"] == 2 and report.summary["fn"] >= 1  # the failure counts as a miss
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "audio/a.flac", "reference": "x"}\nnot json\n{"path": "audio/a.flac"}\n[1]\n')
    dataset = load_dataset(manifest)
    assert len(dataset.examples) == 1 and [p.split(": ")[1] for p in dataset.problems] == [
        "not JSON", "missing reference", "not a JSON object"]


@pytest.mark.parametrize("make", ["missing", "empty", "file", "all-bad"])
def test_bad_layouts(tmp_path, make):
    target = tmp_path / "data"
    if make == "empty":
        (target / "audio").mkdir(parents=True)
        (target / "labels").mkdir()
    elif make == "file":
        target = tmp_path / "data.txt"
        target.write_text("hello")
    elif make == "all-bad":
        target = tmp_path / "m.jsonl"
        target.write_text("nope\n")
    with pytest.raises(InvalidOptionError):
        load_dataset(target)


def test_lid_and_classify(service, data_dir, tmp_path, references):
    rows = [{"path": str(data_dir / n), "reference": references[n]["language"], "task": "lid"}
            for n in ("fleurs-de-001.ogg", "fleurs-en-003.ogg", "jfk.flac")]
    manifest = tmp_path / "lid.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    lid = evaluate(manifest, model="base", task="lid", service=service)
    assert lid.summary["accuracy"] == 1.0 and lid.summary["labels"] == ["de", "en"]
    with pytest.raises(Exception, match="cannot identify languages"):
        evaluate(manifest, model="tiny.en", task="lid", service=service)


def test_classify_with_an_audio_language_model(cache_dir, data_dir, tmp_path):
    from tests.tiny_alm import build_qwen2_audio

    tiny = build_qwen2_audio(tmp_path / "tiny")
    rows = [{"path": str(data_dir / "dog_bark__1-100032-A.ogg"), "reference": "dog", "task": "sound"},
            {"path": str(data_dir / "jfk.flac"), "reference": "speech", "task": "sound"},
            {"path": str(data_dir / "LJ001-0001.flac"), "reference": "speech", "task": "sound"}]
    manifest = tmp_path / "sound.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    service = harken.Service(Settings.load(cache_dir=cache_dir))
    report = evaluate(manifest, model=str(tiny), task="classify", service=service)
    assert all(d["hypothesis"] in ("dog", "speech") for d in report.details)  # constrained to the labels
    assert sum(map(sum, report.summary["confusion"])) == 3 and 0 <= report.summary["macro_f1"] <= 1


def test_cli_compares_models_and_writes_reports(pair, tmp_path):
    root, _ = pair
    out = subprocess.run([sys.executable, "-m", "harken", "eval", str(root), "-m", "tiny.en", "-m", "base",
                          "--output", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "whisper-tiny.en" in out.stdout and "whisper-base" in out.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert [m["model"] for m in report["models"]] == ["whisper-tiny.en", "whisper-base"]
    assert isinstance(report["differences"], list)
    page = (tmp_path / "r.html").read_text()
    assert page.count("<audio controls") >= 4 and "whisper-base" in page
    bad = subprocess.run([sys.executable, "-m", "harken", "eval", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.startswith("harken: error:") and bad.stderr.count("\n") == 1


def test_evaluate_route(cache_dir, pair):
    root, _ = pair
    with live_server(Settings.load(cache_dir=cache_dir, allowed_media_roots=[root])) as url:
        # No match_mode: WER, as `harken eval` and evaluate_folder default to.
        ok = httpx.post(url + "/evaluate", json={"audio_dir": str(root / "audio"), "gt_dir": str(root / "labels")},
                        timeout=300)
        outside = httpx.post(url + "/evaluate", json={"audio_dir": "/etc", "gt_dir": str(root / "labels")})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["task"] == "asr" and body["summary"]["count"] == 4 and 0 < body["summary"]["wer"] < 0.15
    assert "tp" not in body["summary"] and all("wer" in d for d in body["details"])
    assert all(d["path"].startswith(str(root / "audio")) for d in body["details"])
    assert outside.status_code == 403 and outside.json()["error"]["code"] == "forbidden"


def _eval_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harken", "eval", *args], capture_output=True, text=True, timeout=600)


def _jfk_folder(root, data_dir, label: str):
    (root / "audio").mkdir(parents=True)
    (root / "labels").mkdir()
    shutil.copy(data_dir / "jfk.flac", root / "audio" / "jfk.flac")
    (root / "labels" / "jfk.txt").write_text(label + "\n")
    return root


def test_exact_match_applies_the_chosen_normaliser(tmp_path, data_dir):
    """The label has neither the model's capitals nor its commas: the same words after the English
    normaliser, a miss with none."""
    root = _jfk_folder(tmp_path / "set", data_dir, "AND SO MY FELLOW AMERICANS ASK NOT WHAT YOUR COUNTRY CAN DO "
                                                   "FOR YOU ASK WHAT YOU CAN DO FOR YOUR COUNTRY")
    found = {}
    for normaliser in ("english", "none"):
        out = _eval_cli(str(root), "--task", "exact", "--normalizer", normaliser, "-m", "tiny.en",
                        "--output", str(tmp_path / f"{normaliser}.json"))
        assert out.returncode == 0, out.stderr
        report = json.loads((tmp_path / f"{normaliser}.json").read_text())
        found[normaliser] = (report["summary"]["tp"], report["details"][0]["match"])
        assert any(mark in report["details"][0]["hypothesis"] for mark in ",.")  # what makes the two differ
    assert found == {"english": (1, True), "none": (0, False)}
    bad = _eval_cli(str(root), "--task", "exact", "--normalizer", "shouty")
    assert bad.returncode != 0 and bad.stderr.startswith("harken: error:") and bad.stderr.count("\n") == 1


def test_cached_clips_are_marked_and_left_out_of_latency(tmp_path, data_dir):
    """A re-run answered from the (disk) result cache must not report the cache's speed as the model's."""
    root = _jfk_folder(tmp_path / "set", data_dir, "and so my fellow americans ask not what your country can do "
                                                   "for you ask what you can do for your country")
    config = tmp_path / "harken.toml"
    config.write_text(f'cache_dir = "{tmp_path / "cache"}"\n[result_cache]\ndisk = true\n')

    def run(*extra: str) -> tuple[dict, subprocess.CompletedProcess]:
        out = _eval_cli(str(root), "-m", "tiny.en", "--config", str(config), "--output", str(tmp_path / "r.json"), *extra)
        assert out.returncode == 0, out.stderr
        return json.loads((tmp_path / "r.json").read_text()), out

    (first, _), (again, again_out) = run(), run()
    assert first["summary"]["cached"] == 0 and first["details"][0]["cached"] is False
    assert first["summary"]["latency_p50_s"] > 0.05 and first["summary"]["rtf"] > 0.005  # the model's own time
    assert again["details"][0]["cached"] is True and again["details"][0]["hypothesis"] == first["details"][0]["hypothesis"]
    assert again["summary"]["cached"] == 1 and again["summary"]["wer"] == first["summary"]["wer"]
    assert all(again["summary"][k] is None for k in ("latency_mean_s", "latency_p50_s", "latency_p95_s", "rtf"))
    assert "cached clips are left out of latency" in again_out.stderr
    timed, _ = run("--no-cache")
    assert timed["summary"]["cached"] == 0 and timed["summary"]["latency_p50_s"] > 0.05


def test_evaluate_folder_defaults_to_wer(service, pair):
    root, _ = pair
    report = harken.evaluate_folder(root / "audio", root / "labels", model="tiny.en", service=service)
    assert report.task == "asr" and "wer" in report.summary and "tp" not in report.summary
    exact = harken.evaluate_folder(root / "audio", root / "labels", model="tiny.en", service=service, match_mode="exact")
    assert exact.task == "exact" and "tp" in exact.summary


# Two real models that disagree on LJ001-0001 (tiny.en writes "concern" where base hears "concerned").
COMPARED = ["jfk.flac", "LJ001-0001.flac", "fleurs-en-003.ogg", "61-70968-0000.flac"]


@pytest.fixture(scope="module")
def two_model_report(tmp_path_factory, service, data_dir, references):
    from harken.evaluation.report import comparison, write_html

    root = tmp_path_factory.mktemp("compared")
    rows = []
    for name in COMPARED:
        shutil.copy(data_dir / name, root / name)
        rows.append({"path": name, "reference": references[name]["reference"]})
    (root / "set.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    reports = [evaluate(root / "set.jsonl", model=m, service=service) for m in ("tiny.en", "base")]
    page = root / "report" / "index.html"  # a folder of its own: the players must find the clips from there
    page.parent.mkdir()
    write_html(reports, page)
    return page, reports, comparison(reports)


class _Page(HTMLParser):
    """The parts of the report a reader relies on: each clip table's rows, with their cells' marks."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict]] = {}
        self.attrs: list[tuple[str, str, str]] = []  # (tag, name, value) for every attribute
        self._table: str | None = None
        self._row: dict | None = None
        self._cell: int = -1

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.attrs += [(tag, k, v or "") for k, v in attrs.items()]
        if tag == "table" and "clips" in (attrs.get("class") or ""):
            self._table = attrs.get("data-name")
            self.tables[self._table] = []
        elif tag == "tr" and self._table and "data-k0" in attrs:
            self._row = {"clip": attrs["data-k0"], "cells": [], "audio": []}
            self.tables[self._table].append(self._row)
        elif tag == "td" and self._row is not None:
            self._row["cells"].append(set())
        elif tag in ("del", "ins") and self._row is not None:
            self._row["cells"][-1].add(tag)
        elif tag == "audio" and self._row is not None:
            self._row["audio"].append(attrs)

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = self._row = None
        elif tag == "tr":
            self._row = None


def test_html_report_compares_the_models_clip_by_clip(two_model_report):
    page, reports, differences = two_model_report
    text = page.read_text()
    parsed = _Page()
    parsed.feed(text)
    assert differences, "the two models agree on every clip; the comparison has nothing to show"
    differ = parsed.tables["differ"]
    assert sorted(r["clip"] for r in differ) == sorted(Path(d["path"]).name for d in differences)  # a row per differing clip
    for row in differ:
        clip, reference, *hypotheses = row["cells"]
        assert len(hypotheses) == 2 and any(h & {"del", "ins"} for h in hypotheses)  # the differing words are marked
        (audio,) = row["audio"]
        assert "controls" in audio and (page.parent / unquote(audio["src"])).resolve() == (page.parent.parent / row["clip"]).resolve()
    assert len(parsed.tables["all"]) == len(COMPARED)
    assert {v for tag, k, v in parsed.attrs if tag == "th" and k == "data-col"} == {"0", "1", "2"}  # sortable columns
    assert "<script" in text and "sort" in text
    # Self-contained: nothing is fetched from anywhere, and the clips are referenced, not embedded.
    assert not re.search(r"https?:|//[a-z]", " ".join(v for _, k, v in parsed.attrs if k in ("src", "href")))
    assert "<link" not in text and "@import" not in text and "url(" not in text and "http" not in text
    assert len(text) < 200_000


def test_html_report_renders_in_a_browser(two_model_report, tmp_path, chromium):
    image = pytest.importorskip("PIL.Image")
    page, _, _ = two_model_report
    shot = tmp_path / "report.png"
    subprocess.run([str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1366,900", page.as_uri()],
                   capture_output=True, timeout=180)
    assert shot.is_file()
    with image.open(shot) as png:
        assert png.size == (1366, 900)
        pixels = png.convert("L")
        histogram = pixels.histogram()
        inked = sum(histogram[:200]) / (png.size[0] * png.size[1])  # text, bars, marks: not the white page
        assert 0.02 < inked < 0.6 and len(pixels.getcolors(256 * 256)) > 20
    # Laid out on a 1366x768 laptop: nothing wider than the window, no chart text on other chart
    # text, every player drawn. A copy of the page measures itself and writes what it found.
    probe = page.parent / "probe.html"
    probe.write_text(page.read_text() + _PROBE)  # a script after the end of a page still runs
    dom = subprocess.run([str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1366,768",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=180).stdout
    found = json.loads(html.unescape(re.search(r'data-probe="([^"]*)"', dom).group(1)))
    assert found["width"] <= 1366 and found["labels"] >= 10 and found["overlaps"] == []
    assert found["players"] == len(COMPARED) + found["differ"] and found["differ"] >= 1


_PROBE = """<script>
var texts = Array.prototype.slice.call(document.querySelectorAll("figure.chart .label, figure.chart .bar span"));
var boxes = texts.map(function (e) { return e.getBoundingClientRect(); }), overlaps = [];
boxes.forEach(function (a, i) { boxes.slice(i + 1).forEach(function (b, j) {
  if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1)
    overlaps.push(texts[i].textContent + " / " + texts[i + 1 + j].textContent);
}); });
document.querySelectorAll("details").forEach(function (d) { d.open = true; });
var players = Array.prototype.filter.call(document.querySelectorAll("audio[controls]"),
  function (a) { var r = a.getBoundingClientRect(); return r.width > 100 && r.height > 10; });
document.body.setAttribute("data-probe", JSON.stringify({width: document.documentElement.scrollWidth,
  labels: texts.length, overlaps: overlaps, players: players.length,
  differ: document.querySelectorAll("table.clips[data-name=differ] tbody tr").length}));
</script>"""
