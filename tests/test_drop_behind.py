"""Keeping a merge's page-cache footprint small when its files do not fit in memory (issue 12).

When inputs and output together do not fit (pipeline.memory_is_tight), the reader evicts each input
range right after reading it and the writer evicts each output stretch once it is on disk
(io/writeback.py). What matters: the bytes written are the same either way, every evicted output
range was first waited for on disk (DONTNEED only drops clean pages, and a range still dirty would
just stay), the ranges cover the file in order, and any failure of the hints leaves the merge alone.
"""
from __future__ import annotations

import io
import os
import sys

import pytest
import torch
from safetensors.torch import load_file

from lib_merge.io import writeback
from lib_merge.io.safetensors_io import SafetensorsReader, SafetensorsWriter, save_tensors
from lib_merge.merge import pipeline
from lib_merge.merge.engine import merge
from lib_merge.merge.recipe import Recipe

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(os, "posix_fadvise"),
                                reason="sync_file_range and posix_fadvise are Linux's")

TENSORS = {f"k{i}": torch.arange(7000 * (i + 1), dtype=torch.float32) * (i + 1) for i in range(5)}


def write(path: str, drop: bool) -> None:
    entries = [(k, "F32", tuple(v.shape)) for k, v in TENSORS.items()]
    with open(path, "wb") as f:
        w = SafetensorsWriter(f, entries, {"m": "1"})
        if drop:
            w.drop_behind()
        for k, v in TENSORS.items():
            for part in v.split(3000):  # a key in several parts, as the pipeline writes it
                w.write(k, part)
        w.finish()


@pytest.fixture
def spies(monkeypatch):
    calls: list[tuple] = []
    real_sync, real_advise = writeback._SYNC_FILE_RANGE, os.posix_fadvise

    def sync(fd, off, n, flags):
        calls.append(("sync", off, n, flags))
        return real_sync(fd, off, n, flags)

    def advise(fd, off, n, advice):
        calls.append(("advise", off, n, advice))
        return real_advise(fd, off, n, advice)

    monkeypatch.setattr(writeback, "_SYNC_FILE_RANGE", sync)
    monkeypatch.setattr(os, "posix_fadvise", advise)
    monkeypatch.setattr(writeback, "STEP", 4096)
    monkeypatch.setattr(writeback, "LAG", 100)
    return calls


@linux_only
def test_output_stretches_are_evicted_once_on_disk_in_order(tmp_path, spies):
    path = str(tmp_path / "o.safetensors")
    write(path, drop=True)
    got = load_file(path)
    assert all(torch.equal(got[k], v) for k, v in TENSORS.items())
    starts = [(off, n) for kind, off, n, flags in spies if kind == "sync" and flags == writeback.SYNC_FILE_RANGE_WRITE]
    evicted = [(off, n) for kind, off, n, advice in spies if kind == "advise"]
    assert len(starts) >= 5 and evicted
    assert all(a == os.POSIX_FADV_DONTNEED for kind, _, _, a in spies if kind == "advise")
    # each evicted range is a stretch whose write-out was started before, evicted right after a wait
    # for that very range, one stretch behind: every stretch but the last is evicted, in order
    assert evicted == starts[:-1]
    for i, call in enumerate(spies):
        if call[0] == "advise":
            assert spies[i - 1] == ("sync", call[1], call[2], writeback.SYNC_FILE_RANGE_WAIT)
    ends = 0
    for off, n in evicted:
        assert off == ends
        ends = off + n
    assert ends <= os.path.getsize(path)


@linux_only
def test_without_drop_behind_nothing_is_evicted_and_bytes_are_the_same(tmp_path, spies):
    write(str(tmp_path / "plain.safetensors"), drop=False)
    assert not [c for c in spies if c[0] == "advise"]
    assert all(c[3] == writeback.SYNC_FILE_RANGE_WRITE for c in spies)
    write(str(tmp_path / "drop.safetensors"), drop=True)
    assert (tmp_path / "plain.safetensors").read_bytes() == (tmp_path / "drop.safetensors").read_bytes()


@linux_only
def test_a_failing_hint_turns_eviction_off_and_the_file_is_still_whole(tmp_path, spies, monkeypatch):
    def refuse(fd, off, n, advice):
        spies.append(("advise", off, n, advice))
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "posix_fadvise", refuse)
    write(str(tmp_path / "o.safetensors"), drop=True)
    assert len([c for c in spies if c[0] == "advise"]) == 1  # tried once, then off
    got = load_file(str(tmp_path / "o.safetensors"))
    assert all(torch.equal(got[k], v) for k, v in TENSORS.items())


def test_drop_behind_on_a_file_without_descriptor_is_harmless():
    bio = io.BytesIO()
    w = SafetensorsWriter(bio, [("a", "F32", (3,))], None)
    w.drop_behind()
    w.write("a", torch.ones(3))
    w.finish()
    assert load_file_bytes(bio.getvalue())["a"].tolist() == [1.0, 1.0, 1.0]


def load_file_bytes(data: bytes) -> dict:
    from safetensors.torch import load
    return load(data)


@pytest.mark.parametrize("tight", [False, True])
def test_a_merge_that_does_not_fit_evicts_inputs_and_output(tmp_path, monkeypatch, sd1_models, tight):
    """The policy: both kinds of eviction exactly when the files do not fit, and the same bytes."""
    seen = {"inputs": 0, "output": 0}
    real_drop = SafetensorsReader.drop

    def count_drop(self, *a, **k):
        seen["inputs"] += 1
        return real_drop(self, *a, **k)

    real_out = SafetensorsWriter.drop_behind

    def count_out(self):
        seen["output"] += 1
        return real_out(self)

    monkeypatch.setattr(SafetensorsReader, "drop", count_drop)
    monkeypatch.setattr(SafetensorsWriter, "drop_behind", count_out)
    monkeypatch.setattr(pipeline, "CHUNK", 5000)
    recipe = Recipe(tuple(sd1_models[:2]), alpha=0.3)
    merge(recipe, str(tmp_path / "ref.safetensors"), hash_models=False)
    assert seen == {"inputs": 0, "output": 0}  # tiny files fit: no hints at all
    monkeypatch.setattr(pipeline, "memory_is_tight", lambda sources, out_bytes: tight)
    merge(recipe, str(tmp_path / "o.safetensors"), hash_models=False)
    assert (seen["inputs"] > 0) == tight and seen["output"] == int(tight)
    assert (tmp_path / "o.safetensors").read_bytes() == (tmp_path / "ref.safetensors").read_bytes()


def test_memory_is_tight_compares_files_with_half_the_ram(tmp_path, monkeypatch):
    p = tmp_path / "a.safetensors"
    save_tensors(str(p), {"x": torch.zeros(1000)})
    size = os.path.getsize(p)
    with SafetensorsReader(str(p)) as r:
        meminfo = tmp_path / "meminfo"
        real_open = open

        def fake_open(path, *a, **k):
            return real_open(meminfo if path == "/proc/meminfo" else path, *a, **k)

        monkeypatch.setattr("builtins.open", fake_open)
        meminfo.write_text(f"MemTotal:       {size * 8 // 1024 + 1} kB\nMemAvailable:   1 kB\n")
        assert pipeline.memory_is_tight([r], size * 3) is False  # 4 files' worth in 8: fits in half
        assert pipeline.memory_is_tight([r], size * 4) is True
        meminfo.write_text("garbage\n")
        assert pipeline.memory_is_tight([r], size * 100) is False  # unknown: no hints
