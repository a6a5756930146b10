"""Hostile safetensors headers, built byte by byte (issue 10): each refused on read with a message
saying what is wrong, exactly where the `safetensors` library refuses them too; and a fuzz test: any
header or weight string gives a MergeError or a valid output, never another exception, never a file
the library rejects."""
from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from safetensors import SafetensorError
from safetensors.torch import load_file

from lib_merge.errors import MergeError, ModelFileError
from lib_merge.io.safetensors_io import read_header

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def raw_file(path, header: dict | bytes, data: bytes) -> str:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data)
    return str(path)


def t(dtype, shape, s, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [s, e]}


def library_accepts(path) -> bool:
    try:
        load_file(str(path))
        return True
    except (SafetensorError, Exception):
        return False


CASES = [  # (header, data bytes, words the message must have)
    ({"a": t("F32", [-2], 0, 8)}, 8, "negative dimension"),
    ({"a": t("F32", [2], 4, 12)}, 12, "gap of 4 bytes"),
    ({"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}, 12, "overlaps"),
    ({"a": t("F32", [3], 0, 8)}, 8, "needs 12 bytes"),
    ({"a": t("F32", [2], -8, 0)}, 8, "negative data offset"),
    ({"a": t("F32", [2], 8, 0)}, 8, "end before they start"),
    ({"a": t("F32", [2], 0, 8)}, 12, "bytes after its last tensor"),
    ({"a": t("F32", [4], 0, 16)}, 8, "truncated"),
    ({"a": t("F32", [2.0], 0, 8)}, 8, "whole numbers"),
    ({"a": t("F32", [True, 2], 0, 8)}, 8, "whole numbers"),
    ({"a": t("F32", [2 ** 40, 2 ** 40], 0, 8)}, 8, "overflows"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 9]}}, 8, "two whole numbers"),
    ({"__metadata__": {"x": 1}, "a": t("F32", [2], 0, 8)}, 8, "__metadata__"),
    ({"a": {"dtype": "F32", "shape": [2]}}, 8, "malformed"),
]


@pytest.mark.parametrize("header, n, words", CASES)
def test_hostile_header_is_refused_with_the_reason(tmp_path, header, n, words):
    p = raw_file(tmp_path / "h.safetensors", header, b"\0" * n)
    assert not library_accepts(p)  # the reference: the safetensors library refuses it too
    with pytest.raises(ModelFileError) as e:
        read_header(p)
    assert words in str(e.value) and "Fix:" in str(e.value)
    assert "lies past the end" not in str(e.value)


@pytest.mark.parametrize("header, n", [
    ({"b": t("F32", [2], 8, 16), "a": t("F32", [2], 0, 8)}, 16),  # header order is not data order
    ({"a": t("F32", [0], 0, 0), "b": t("F32", [0], 0, 0), "c": t("F16", [1], 0, 2)}, 2),
    ({}, 0),
])
def test_what_the_library_accepts_we_accept(tmp_path, header, n):
    p = raw_file(tmp_path / "h.safetensors", header, b"\0" * n)
    assert library_accepts(p)
    tensors, _ = read_header(p)
    assert set(tensors) == set(header)


def test_malicious_ckpt_is_one_whole_sentence_without_torch_warnings(tmp_path, sd1_models):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.ckpt"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": {"a": 1}, "x": Evil()}, f, protocol=4)
    evil2 = tmp_path / "evil2.ckpt"
    torch.save({"state_dict": {"a": torch.zeros(2)}, "x": Evil()}, str(evil2))
    for path in (evil, evil2):
        r = subprocess.run([sys.executable, "-m", "lib_merge", "merge", str(path), sd1_models[1], "-o",
                            str(tmp_path / "m.safetensors")], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 2 and "pwned" not in r.stdout
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Warning" not in r.stderr, r.stderr
        assert lines[0].endswith("convert it to .safetensors with a tool you trust") and path.name in lines[0]
    assert "posix.system" in lines[0] or "os.system" in lines[0]


# ---- fuzz ----------------------------------------------------------------------------------------
_dims = st.one_of(st.integers(-3, 6), st.just(2 ** 62), st.floats(allow_nan=True), st.booleans(), st.text(max_size=2))
_entry = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "F16", "BF16", "I64", "U16", "F8_E4M3", "X", 3]),
    "shape": st.one_of(st.lists(_dims, max_size=3), st.none(), st.integers()),
    "data_offsets": st.one_of(st.lists(st.integers(-4, 40), min_size=0, max_size=3), st.text(max_size=3)),
})
_header = st.dictionaries(st.text(min_size=1, max_size=8), _entry, max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=_header, extra=st.integers(0, 48), meta=st.one_of(st.none(), st.dictionaries(st.text(max_size=3), st.one_of(st.text(max_size=3), st.integers()), max_size=2)))
def test_fuzz_headers_read_or_merge_error(tmp_path_factory, header, extra, meta):
    d = tmp_path_factory.mktemp("fz")
    h = dict(header)
    if meta is not None:
        h["__metadata__"] = meta
    p = raw_file(d / "f.safetensors", h, b"\x11" * extra)
    try:
        tensors, _ = read_header(p)
    except MergeError:
        assert not library_accepts(p) or any(v["dtype"] not in ("F32", "F16", "BF16", "I64")
                                             for v in header.values())  # dtypes we do not merge
        return
    assert library_accepts(p), f"we accepted a header the library rejects: {h}"
    from lib_merge.io.safetensors_io import SafetensorsReader, save_tensors
    with SafetensorsReader(p) as r:  # read back, write again: the library must accept our file
        sd = {k: r.get(k) for k in tensors}
    out = d / "out.safetensors"
    save_tensors(str(out), sd, {"k": "v"})
    assert library_accepts(out)


_tok = st.one_of(st.sampled_from(["0", "0.5", "1", "-1", "1e308", "nan", "inf", "R", "U", "X", "", " ", "GRAD_V",
                                  "grad_v", "1e-3", "10", "10.5", "0x10", "--1"]),
                 st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=4))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(toks=st.lists(_tok, min_size=1, max_size=27), alpha=st.floats(allow_nan=True, allow_infinity=True),
       sep=st.sampled_from([",", " ", ", "]))
def test_fuzz_weight_strings_merge_error_or_valid_file(tmp_path_factory, sd1_models, toks, alpha, sep):
    from lib_merge.merge.engine import merge
    from lib_merge.merge.recipe import Recipe
    out = tmp_path_factory.mktemp("fw") / "m.safetensors"
    try:
        merge(Recipe(models=tuple(sd1_models[:2]), alpha=alpha, alpha_blocks=sep.join(toks), seed=1),
              str(out), hash_models=False)
    except MergeError:
        assert not out.exists()
        return
    assert library_accepts(out)
    sd = load_file(str(out))
    assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())
