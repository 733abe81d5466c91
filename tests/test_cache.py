"""The result cache is bounded by entries and by bytes, and hands out copies."""

from __future__ import annotations

from harken.runtime.cache import ResultCache


def test_the_byte_bound_evicts_the_oldest_and_hits_are_copies(tmp_path):
    cache = ResultCache(memory_items=100, memory_bytes=3_000)
    for i in range(10):
        cache.put(f"k{i}", {"text": "x" * 900, "i": i})  # about 920 bytes of JSON each
    assert [cache.get(f"k{i}") is not None for i in range(10)] == [False] * 7 + [True] * 3
    hit = cache.get("k9")
    hit["text"] = "changed by a caller"
    assert cache.get("k9")["text"] == "x" * 900
    cache.put("huge", {"text": "y" * 10_000})  # larger than the whole bound: not kept in memory
    assert cache.get("huge") is None and cache.get("k9") is not None


def test_disk_entries_survive_memory_eviction(tmp_path):
    cache = ResultCache(memory_items=1, directory=tmp_path)
    cache.put("a", {"n": 1})
    cache.put("b", {"n": 2})
    assert cache.get("a") == {"n": 1} and ResultCache(0, tmp_path).get("b") == {"n": 2}
    (tmp_path / "c.json").write_text("{not json")
    assert cache.get("c") is None
