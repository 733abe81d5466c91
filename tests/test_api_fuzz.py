"""A short, seeded schemathesis pass over every operation of a real server: no 5xx, no broken
connection, only documented statuses, content types and bodies, and 405 with an Allow header for
a method an operation does not have. fuzz/api_fuzz.py runs the long version with the same data.

`st run` runs in a child process, so the server in this one keeps a core to itself. (Schemathesis
4.32's pytest loader, from_fixture, sets request.node._nodeid, which pytest 9.2 no longer has; the
CLI runs every phase, the coverage phase's undeclared-method probes included.)"""

from __future__ import annotations

import pytest

pytest.importorskip("schemathesis")

from fuzz import api_fuzz  # noqa: E402
from harken import Settings  # noqa: E402
from tests.live_server import live_server  # noqa: E402


def test_api_conforms_to_its_schema(cache_dir, tmp_path):
    media = api_fuzz.prepare(tmp_path)
    settings = Settings.load(cache_dir=cache_dir, allowed_media_roots=[media], allowed_url_domains=[],
                             server={"request_timeout_s": 60.0, "jobs_dir": tmp_path / "jobs"})
    with live_server(settings) as url:
        done = api_fuzz.run_schemathesis(url, media, tmp_path, max_examples=8, seed=1, capture=True)
    table = api_fuzz.statuses(tmp_path / "report")
    report = f"{done.stdout[-12000:]}\n{done.stderr[-3000:]}\nresponses:\n{api_fuzz.format_statuses(table)}"
    assert done.returncode == 0, report
    seen = {key for counts in table.values() for key in counts}
    assert not any(key.startswith("5") or key == "no response" for key in seen), report
    # It got past validation: most operations answered 200 at least once.
    answered = [label for label, counts in table.items() if "200" in counts]
    assert len(answered) >= 10, report
