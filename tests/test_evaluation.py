"""Evaluation on copies of the real recordings: datasets, metrics, reports, CLI and HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

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
    report = evaluate(root, model="tiny.en", service=service)
    norm = EnglishTextNormalizer()
    details = report.details
    expected = jiwer.wer([norm(d["reference"]) for d in details], [norm(d["hypothesis"]) for d in details])
    assert report.summary["wer"] == pytest.approx(expected) and 0 < report.summary["wer"] < 0.15
    assert report.summary["cer"] == pytest.approx(jiwer.cer([norm(d["reference"]) for d in details], [norm(d["hypothesis"]) for d in details]))
    for d in details:
        assert d["wer"] == pytest.approx(jiwer.wer(norm(d["reference"]), norm(d["hypothesis"])))
    assert report.summary["count"] == 4 and report.summary["latency_p95_s"] >= report.summary["latency_p50_s"] > 0
    assert report.summary["rtf"] > 0 and not report.problems


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
    assert page.count("data:image/png;base64,") >= 4 and "whisper-base" in page
    bad = subprocess.run([sys.executable, "-m", "harken", "eval", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.startswith("harken: error:") and bad.stderr.count("\n") == 1


def test_evaluate_route(cache_dir, pair):
    root, _ = pair
    with live_server(Settings.load(cache_dir=cache_dir, allowed_media_roots=[root])) as url:
        ok = httpx.post(url + "/evaluate", json={"audio_dir": str(root / "audio"), "gt_dir": str(root / "labels"),
                                                  "match_mode": "wer"}, timeout=300)
        outside = httpx.post(url + "/evaluate", json={"audio_dir": "/etc", "gt_dir": str(root / "labels")})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["task"] == "asr" and body["summary"]["count"] == 4 and 0 < body["summary"]["wer"] < 0.15
    assert all(d["path"].startswith(str(root / "audio")) for d in body["details"])
    assert outside.status_code == 403 and outside.json()["error"]["code"] == "forbidden"
