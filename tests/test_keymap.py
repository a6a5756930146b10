"""Key maps for pruned SDXL: a tiny real-keyed SDXL pruned by a known selection (plus noise) is recovered."""
from __future__ import annotations

import json
import re

import pytest
import torch

from lib_merge.cli import main
from lib_merge.io.safetensors_io import save_tensors
from lib_merge.merge import keymap
from tests import synth

P = "model.diffusion_model."
# SSD-1B-like pruning (REFERENCE §9, and the seed's guess "1,2,3,7 kept" for the 10-layer blocks)
KEEP = {"input_blocks.7.1": [1, 2, 3, 7], "input_blocks.8.1": [1, 2, 3, 7],
        "output_blocks.0.1": [0, 4, 5, 9], "output_blocks.1.1": [1, 2, 3, 7],
        "output_blocks.4.1": [1], "output_blocks.5.1": [0], "middle_block.1": []}
_L = re.compile(r"^model\.diffusion_model\.(.*)\.transformer_blocks\.(\d+)\.(.+)$")


def prune(base: dict, keep=KEEP, noise=0.05, seed=1) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in base.items():
        m = _L.match(k)
        if m and m.group(1) in keep:
            kept = keep[m.group(1)]
            old = int(m.group(2))
            if old not in kept:
                continue
            k = f"{P}{m.group(1)}.transformer_blocks.{kept.index(old)}.{m.group(3)}"
            v = (v.float() + noise * v.float().std() * torch.randn(v.shape, generator=g)).to(v.dtype)
        out[k] = v
    return out


@pytest.fixture()
def pair(tmp_path):
    base = synth.state_dict("sdxl", seed=3)
    pruned = prune(base)
    save_tensors(str(tmp_path / "base.safetensors"), base)
    save_tensors(str(tmp_path / "pruned.safetensors"), pruned)
    return tmp_path, base, pruned


def test_assign_is_optimal_order_preserving():
    # greedy argmax would give row 0 and row 1 both column 1; the order-preserving optimum is 0 -> 0, 1 -> 1
    S = [[0.8, 0.9, 0.1], [0.1, 0.95, 0.2]]
    assert keymap.assign(S) == [0, 1]
    S = [[0.1, 0.2, 0.9, 0.1], [0.1, 0.1, 0.1, 0.9]]
    assert keymap.assign(S) == [2, 3]


def test_map_recovers_known_selection(pair, capsys):
    tmp, base, pruned = pair
    out = tmp / "map.json"
    rc = main(["map", str(tmp / "pruned.safetensors"), str(tmp / "base.safetensors"), "-o", str(out),
               "--hash-cache", str(tmp / "h.json")])
    text = capsys.readouterr().out
    assert rc == 0, text
    d = json.loads(out.read_text())
    got = {(x["pruned"], x["base"]) for x in d["layers"]}
    want = {(f"{P}{c}.transformer_blocks.{i}", f"{P}{c}.transformer_blocks.{o}")
            for c, kept in KEEP.items() for i, o in enumerate(kept)}
    assert got == want
    assert not d["warnings"]
    assert all(x["similarity"] > 0.99 and x["margin"] > 0.5 for x in d["layers"])
    assert "input_blocks.7.1.transformer_blocks.3" in text and "transformer_blocks.7" in text
    # cached next to the models, keyed by both hashes; a second run uses it
    assert list(tmp.glob(".blockmerge-keymap-*.json"))
    main(["map", str(tmp / "pruned.safetensors"), str(tmp / "base.safetensors"), "-o", str(tmp / "m2.json"),
          "--hash-cache", str(tmp / "h.json")])
    assert "cached map" in capsys.readouterr().err
    km = keymap.load(str(out))
    assert km.to_base(f"{P}output_blocks.0.1.transformer_blocks.2.attn1.to_q.weight") == \
        f"{P}output_blocks.0.1.transformer_blocks.5.attn1.to_q.weight"


def test_ambiguous_layers_warn(tmp_path, capsys):
    base = synth.state_dict("sdxl", seed=4)
    # base layers 3 and 4 of IN07 are (nearly) the same: a survivor of either cannot be told apart
    c = f"{P}input_blocks.7.1.transformer_blocks."
    for k in list(base):
        if k.startswith(c + "4."):
            base[k] = base[k.replace(c + "4.", c + "3.")].clone()
    pruned = prune(base, keep={"input_blocks.7.1": [1, 3, 7]})
    save_tensors(str(tmp_path / "b.safetensors"), base)
    save_tensors(str(tmp_path / "p.safetensors"), pruned)
    rc = main(["map", str(tmp_path / "p.safetensors"), str(tmp_path / "b.safetensors"), "-o",
               str(tmp_path / "m.json"), "--hash-cache", str(tmp_path / "h.json")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "warning: model.diffusion_model.input_blocks.7.1.transformer_blocks.1" in out and "LOW" in out


def test_layer_matching_nothing_and_corrupt_map(tmp_path, capsys):
    base = synth.state_dict("sdxl", seed=5)
    pruned = prune(synth.state_dict("sdxl", seed=6))  # another model's layers: nothing matches
    save_tensors(str(tmp_path / "b.safetensors"), base)
    save_tensors(str(tmp_path / "p.safetensors"), pruned)
    rc = main(["map", str(tmp_path / "p.safetensors"), str(tmp_path / "b.safetensors"), "-o",
               str(tmp_path / "m.json"), "--hash-cache", str(tmp_path / "h.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "matches no layer" in err and "Fix:" in err and "\n" not in err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(keymap.KeyMapError, match="not valid JSON.*Fix: make it again"):
        keymap.load(str(bad))
    bad.write_text(json.dumps({"format": "x"}))
    with pytest.raises(keymap.KeyMapError, match="not a blockmerge key map"):
        keymap.load(str(bad))


def test_merge_through_map_equals_hand_computed(pair, capsys):
    tmp, base, pruned = pair
    g = torch.Generator().manual_seed(9)  # one generator: every layer gets its own difference
    tune = {k: (v.float() + 0.1 * torch.randn(v.shape, generator=g)).to(v.dtype)
            if v.is_floating_point() else v for k, v in base.items()}
    save_tensors(str(tmp / "tune.safetensors"), tune)
    a, b, c = (str(tmp / n) for n in ("pruned.safetensors", "tune.safetensors", "base.safetensors"))
    hc = ["--hash-cache", str(tmp / "h.json")]
    # without a map: refused, naming the first mismatched layer and how to make the map
    rc = main(["merge", a, b, c, "--mode", "add_difference", "--alpha", "1.3", "-o", str(tmp / "x.safetensors")] + hc)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "input_blocks.7.1.transformer_blocks has 4 transformer layers" in err
    assert "python -m lib_merge map" in err and "--key-map" in err and "\n" not in err
    assert main(["map", a, c, "-o", str(tmp / "map.json")] + hc) == 0
    out = tmp / "m.safetensors"
    rc = main(["merge", a, b, c, "--mode", "add_difference", "--alpha", "1.3", "--key-map", str(tmp / "map.json"),
               "-o", str(out), "--quiet"] + hc)
    assert rc == 0, capsys.readouterr().err
    from lib_merge.io.safetensors_io import SafetensorsReader
    with SafetensorsReader(str(out)) as r:
        meta = r.metadata
        for kk, (inner, kept) in {"input_blocks.7.1": ("attn2.to_k.weight", 2),
                                  "output_blocks.0.1": ("ff.net.0.proj.weight", 3)}.items():
            key = f"{P}{kk}.transformer_blocks.{kept}.{inner}"
            src = f"{P}{kk}.transformer_blocks.{KEEP[kk][kept]}.{inner}"
            want = (pruned[key].float() + 1.3 * (tune[src].float() - base[src].float())).to(pruned[key].dtype)
            got = r.get(key).float()
            assert torch.allclose(got, want.float(), atol=2e-3, rtol=2e-3)  # fp16 rounding of the sum
            by_name = pruned[key].float() + 1.3 * (tune[key].float() - base[key].float())
            assert not torch.allclose(got, by_name, atol=0.05)  # the by-name merge is really different
        k0 = f"{P}input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight"  # an unpruned block: by name
        want = (pruned[k0].float() + 1.3 * (tune[k0].float() - base[k0].float())).to(pruned[k0].dtype)
        assert torch.allclose(r.get(k0).float(), want.float(), atol=2e-3, rtol=2e-3)
    rec = json.loads(meta.get("blockmerge_recipe") or json.dumps(json.loads(next(
        v for v in meta.values() if "key_map_sha256" in v))))
    assert rec.get("key_map_sha256") == keymap.load(str(tmp / "map.json")).digest()


def test_replay_finds_the_key_map(pair, capsys, tmp_path_factory):
    """Replay uses the map the merge used: by name next to the models, else the cached copy (by the
    recorded map hash), else --key-map; a missing or different map is a one-line error."""
    import os
    import shutil
    tmp, base, _ = pair
    g = torch.Generator().manual_seed(9)
    tune = {k: (v.float() + 0.1 * torch.randn(v.shape, generator=g)).to(v.dtype)
            if v.is_floating_point() else v for k, v in base.items()}
    save_tensors(str(tmp / "tune.safetensors"), tune)
    a, b, c = (str(tmp / n) for n in ("pruned.safetensors", "tune.safetensors", "base.safetensors"))
    hc = ["--hash-cache", str(tmp / "h.json")]
    assert main(["map", a, c, "-o", str(tmp / "ssd.json")] + hc) == 0
    out = tmp / "out"
    out.mkdir()
    merged = out / "m.safetensors"
    assert main(["merge", a, b, c, "--mode", "add_difference", "--alpha", "1.3", "--key-map", str(tmp / "ssd.json"),
                 "-o", str(merged), "--quiet"] + hc) == 0
    want = merged.read_bytes()
    capsys.readouterr()

    def replay(*extra):
        target = out / "r.safetensors"
        if target.exists():
            target.unlink()
        rc = main(["replay", str(merged), "-o", str(target), "--models-dir", str(tmp), "--quiet", *extra] + hc)
        err = capsys.readouterr().err.strip()
        return rc, err, (target.read_bytes() if target.exists() else None)

    rc, err, got = replay()  # ssd.json next to the models, by name
    assert rc == 0 and got == want, err
    elsewhere = tmp_path_factory.mktemp("maps") / "moved.json"
    shutil.move(str(tmp / "ssd.json"), str(elsewhere))
    assert list(tmp.glob(".blockmerge-keymap-*.json"))  # the cached copy beside the pruned model
    rc, err, got = replay()  # found by the recorded hash
    assert rc == 0 and got == want, err
    for cached in tmp.glob(".blockmerge-keymap-*.json"):
        os.remove(cached)
    rc, err, got = replay()
    assert rc == 2 and got is None and "\n" not in err
    assert "merged through key map ssd.json (map hash" in err and "Fix: put ssd.json next to model A" in err
    rc, err, got = replay("--key-map", str(elsewhere))
    assert rc == 0 and got == want, err
    other = json.loads(elsewhere.read_text())
    other["layers"][0]["base"], other["layers"][1]["base"] = other["layers"][1]["base"], other["layers"][0]["base"]
    (tmp / "swapped.json").write_text(json.dumps(other))
    rc, err, got = replay("--key-map", str(tmp / "swapped.json"))
    assert rc == 2 and "is another map than the one the recipe used" in err and got is None
