"""Issue 12: the inputs' sha256 come from the merge's own reads (no hashing pass), the header is
rewritten in place with them, and the hash cache is keyed by path + size + mtime and can share the
webui's cache. Expected digests are hashlib.sha256 of the files' bytes, computed here."""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
import torch

from lib_merge.io import hashing
from lib_merge.io.hashing import HashCache, StreamHasher, is_fake_forge_hash
from lib_merge.io.safetensors_io import read_header, save_tensors
from lib_merge.merge.engine import merge
from lib_merge.merge.recipe import Recipe
from tests.synth import state_dict, write_checkpoint


def _sha(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _no_hashing_pass(monkeypatch):
    """Any whole-file hashing pass fails the test: digests must come from the merge's reads."""
    def boom(*a, **k):
        raise AssertionError("a separate hashing pass was made")
    monkeypatch.setattr(hashing, "sha256_file", boom)


@pytest.fixture
def pair(tmp_path, sd1_models):
    d = tmp_path / "in"
    d.mkdir()
    a, b = (str(shutil.copy(p, d)) for p in sd1_models[:2])
    return a, b


def test_recorded_sha256_is_the_files_and_no_hashing_pass(tmp_path, pair, monkeypatch):
    _no_hashing_pass(monkeypatch)
    cache = HashCache(str(tmp_path / "h.json"))
    out = tmp_path / "o.safetensors"
    res = merge(Recipe(pair, alpha=0.3), str(out), hash_cache=cache)
    want = [_sha(p) for p in pair]
    assert res.hashes == want
    _, meta = read_header(str(out))
    assert json.loads(meta["sd_merge_recipe"])["model_hashes"] == want
    assert set(json.loads(meta["sd_merge_models"])) == set(want)
    # the digests are cached now, keyed by path + size + mtime
    saved = json.load(open(tmp_path / "h.json"))
    for p, h in zip(pair, want):
        st = os.stat(p)
        assert saved[os.path.abspath(p)] == {"size": st.st_size, "mtime": st.st_mtime, "sha256": h}


def test_output_identical_to_a_merge_with_hashes_from_a_separate_pass(tmp_path, pair):
    fresh = tmp_path / "fresh.safetensors"
    merge(Recipe(pair, alpha=0.3), str(fresh), hash_cache=HashCache(str(tmp_path / "empty.json")))
    pre = HashCache(str(tmp_path / "pre.json"))
    for p in pair:
        assert pre.sha256(p) == _sha(p)  # the separate pass, as before issue 12
    cached = tmp_path / "cached.safetensors"
    merge(Recipe(pair, alpha=0.3), str(cached), hash_cache=pre)
    assert fresh.read_bytes() == cached.read_bytes()


def test_padded_header_reads_with_the_safetensors_library(tmp_path, pair):
    from safetensors import safe_open
    out = tmp_path / "o.safetensors"
    merge(Recipe(pair, alpha=0.5), str(out), hash_cache=HashCache(str(tmp_path / "h.json")))
    raw = out.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0 and raw[8:8 + n].rstrip(b" ").endswith(b"}")
    a = state_dict("sd1", seed=0)
    b = state_dict("sd1", seed=1)
    key = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"
    with safe_open(str(out), "pt") as f:
        assert json.loads(f.metadata()["sd_merge_recipe"])["model_hashes"] == [_sha(p) for p in pair]
        want = (a[key].float() * 0.5 + b[key].float() * 0.5).half()
        assert torch.equal(f.get_tensor(key), want)


def test_mtime_change_is_a_miss_and_the_new_bytes_are_hashed(tmp_path, pair):
    cache = HashCache(str(tmp_path / "h.json"))
    a, b = pair
    assert cache.lookup(a) is None  # miss: never seen
    merge(Recipe(pair, alpha=0.5), str(tmp_path / "1.safetensors"), hash_cache=cache)
    assert cache.lookup(a) == _sha(a)  # hit
    # same size, other bytes, other mtime: a miss, and the merge records the new content's digest
    write_checkpoint(a, "sd1", seed=7)
    st = os.stat(a)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert cache.lookup(a) is None
    res = merge(Recipe(pair, alpha=0.5), str(tmp_path / "2.safetensors"), hash_cache=cache)
    assert res.hashes[0] == _sha(a) and cache.lookup(a) == _sha(a)


def test_inputs_read_out_of_order_and_in_part(tmp_path, sd1_models, monkeypatch):
    """B's tensors lie in reverse order in its file and B has a key the merge never reads: the
    digest is still the file's (gaps are read by the hasher itself)."""
    _no_hashing_pass(monkeypatch)
    sd = state_dict("sd1", seed=3)
    rev = dict(reversed(list(sd.items())))
    rev["extra_key_nobody_reads"] = torch.ones(1000, dtype=torch.float16)
    b = tmp_path / "B.safetensors"
    save_tensors(str(b), rev)
    res = merge(Recipe((sd1_models[0], str(b)), alpha=0.5), str(tmp_path / "o.safetensors"),
                hash_cache=HashCache(str(tmp_path / "h.json")))
    assert res.hashes == [_sha(sd1_models[0]), _sha(b)]


def test_stream_hasher_any_read_pattern(tmp_path):
    data = os.urandom(300_001)
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    h = StreamHasher(str(p))
    mv = memoryview(data)
    for off, n in ((100, 50), (100, 50), (120, 1000), (5000, 10), (0, 10), (200_000, 100_001)):
        h.feed(off, mv[off:off + n])
    assert h.finish() == hashlib.sha256(data).hexdigest()
    assert h.fed_bytes + h.gap_bytes == len(data)
    assert h.gap_bytes == 100 + (5000 - 1120) + (200_000 - 5010)


def test_merge_into_dict_records_the_digests(tmp_path, pair, monkeypatch):
    _no_hashing_pass(monkeypatch)
    res = merge(Recipe(pair, alpha=0.5), None, hash_cache=HashCache(str(tmp_path / "h.json")))
    assert res.hashes == [_sha(p) for p in pair]
    assert json.loads(res.metadata["sd_merge_recipe"])["model_hashes"] == res.hashes


@pytest.mark.parametrize("order", ["AB", "BA"])
def test_family_tree_naming_another_input(tmp_path, sd1_models, order):
    """B is a merge whose sd_merge_models holds A's digest with a long entry: with the real digests
    entries collapse (a placeholder header has them all), and the later one wins, as in the webui's
    update order. The rewritten header must still be the right one."""
    a = sd1_models[0]
    da = _sha(a)
    long_entry = {"name": "x" * 3000, "legacy_hash": "00000000", "sd_merge_recipe": {"note": "\"q\"" * 500}}
    b = tmp_path / "B.safetensors"
    save_tensors(str(b), state_dict("sd1", seed=4), {"sd_merge_models": json.dumps({da: long_entry})})
    out = tmp_path / "o.safetensors"
    paths = (a, str(b)) if order == "AB" else (str(b), a)
    merge(Recipe(paths, alpha=0.5), str(out), hash_cache=HashCache(str(tmp_path / "h.json")))
    _, meta = read_header(str(out))
    models = json.loads(meta["sd_merge_models"])
    assert set(models) == {da, _sha(b)} and models[_sha(b)]["name"] == "B"
    if order == "AB":  # A's own entry, then B's family tree over it
        assert models[da] == long_entry
    else:  # B's family tree, then A's own entry over it
        assert models[da]["name"] == "A" and models[da]["legacy_hash"] == hashlib.sha256(
            open(a, "rb").read()[0x100000:0x110000]).hexdigest()[:8]
    assert json.loads(meta["sd_merge_recipe"])["model_hashes"] == [_sha(p) for p in paths]


def test_same_file_twice(tmp_path, pair, monkeypatch):
    _no_hashing_pass(monkeypatch)
    a = pair[0]
    out = tmp_path / "o.safetensors"
    res = merge(Recipe((a, a), alpha=0.5), str(out), hash_cache=HashCache(str(tmp_path / "h.json")))
    assert res.hashes == [_sha(a)] * 2
    _, meta = read_header(str(out))
    assert list(json.loads(meta["sd_merge_models"])) == [_sha(a)]


class _WebuiCache:
    """The A1111 contract (modules/hashes.py sha256_from_cache / sha256, modules/cache.py, 1.9+):
    cache("hashes")["checkpoint/NAME"] = {"mtime": getmtime(file), "sha256": hex}; an entry is stale
    when the file's mtime is newer than the one recorded."""

    def __init__(self, folder):
        self.folder = str(folder)
        self.hashes: dict[str, dict] = {}
        self.stored = []

    def _title(self, path):
        return "checkpoint/" + os.path.relpath(path, self.folder).replace(os.sep, "/")

    def lookup(self, path, mtime):
        e = self.hashes.get(self._title(path))
        if not e or mtime > e.get("mtime", 0) or e.get("sha256") is None:
            return None
        return e["sha256"]

    def store(self, path, mtime, digest):
        self.stored.append(self._title(path))
        self.hashes[self._title(path)] = {"mtime": mtime, "sha256": digest}


def test_shared_webui_cache_hit_miss_and_store(tmp_path, pair, monkeypatch):
    a, b = pair
    web = _WebuiCache(os.path.dirname(a))
    web.hashes["checkpoint/A.safetensors"] = {"mtime": os.path.getmtime(a), "sha256": _sha(a)}
    cache = HashCache(str(tmp_path / "h.json"), shared=web)
    _no_hashing_pass(monkeypatch)
    res = merge(Recipe(pair, alpha=0.5), str(tmp_path / "o.safetensors"), hash_cache=cache)
    assert res.hashes == [_sha(a), _sha(b)]
    assert web.stored == ["checkpoint/B.safetensors"]  # A came from the webui; B's new digest went back
    assert web.hashes["checkpoint/B.safetensors"] == {"mtime": os.path.getmtime(b), "sha256": _sha(b)}


def test_forge_fake_hash_in_the_webui_cache_is_ignored(tmp_path, pair):
    a, _ = pair
    fake = hashlib.sha256(b"A.safetensors").hexdigest()  # what Forge 2.0.0 stored
    assert is_fake_forge_hash(a, fake)
    web = _WebuiCache(os.path.dirname(a))
    web.hashes["checkpoint/A.safetensors"] = {"mtime": os.path.getmtime(a) + 10, "sha256": fake}
    cache = HashCache(str(tmp_path / "h.json"), shared=web)
    assert cache.lookup(a) is None
    assert cache.sha256(a) == _sha(a)
    assert web.hashes["checkpoint/A.safetensors"]["sha256"] == _sha(a)  # corrected in the webui too


def test_stale_webui_entry_is_a_miss(tmp_path, pair):
    a, _ = pair
    web = _WebuiCache(os.path.dirname(a))
    web.hashes["checkpoint/A.safetensors"] = {"mtime": os.path.getmtime(a) - 10, "sha256": "ab" * 32}
    assert HashCache(str(tmp_path / "h.json"), shared=web).lookup(a) is None


# ---- through the webui double: the webui's cache.json ("hashes" / "checkpoint/NAME") -------------
from tests.webui_double.fixtures import webui_fixture  # noqa: E402,F401  (fixture)


def test_webui_cache_json_is_shared_both_ways(webui, monkeypatch):
    from lib_merge.webui.api import merge_route, webui_deps
    webui.add_checkpoint("A.safetensors", seed=1)
    os.makedirs(os.path.join(webui.models_dir, "sub"))
    webui.add_checkpoint(os.path.join("sub", "B.safetensors"), seed=2)
    a = os.path.join(webui.models_dir, "A.safetensors")
    b = os.path.join(webui.models_dir, "sub", "B.safetensors")
    hashes = __import__("modules.hashes", fromlist=["x"])
    assert hashes.sha256(a, "checkpoint/A.safetensors") == _sha(a)  # the webui hashed A itself
    passes = []
    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda p, *k: passes.append(p) or real(p, *k))
    out = merge_route({"recipe": {"models": ["A", "sub/B.safetensors"], "alpha": 0.3}, "output": "mix"},
                      webui_deps())
    assert out["model_hashes"] == [_sha(a), _sha(b)]
    # no input hashed in a pass of its own (the route reports the new file's own sha256: that one is)
    assert passes == [out["output"]] and out["sha256"] == _sha(out["output"])
    with open(os.path.join(webui.tmp, "cache.json"), encoding="utf8") as f:
        saved = json.load(f)["hashes"]
    # B was hashed by the merge's reads and handed to the webui under its title, A was left as it was
    assert saved["checkpoint/sub/B.safetensors"] == {"mtime": os.path.getmtime(b), "sha256": _sha(b)}
    assert saved["checkpoint/A.safetensors"]["sha256"] == _sha(a)
    assert hashes.computed == [a]  # and the webui will not hash B again:
    assert hashes.sha256(b, "checkpoint/sub/B.safetensors") == _sha(b) and hashes.computed == [a]
