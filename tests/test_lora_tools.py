"""End to end on tiny checkpoints with real key names: bake, merge, extract, inspect, and the CLI.

Expected values are computed here from the LoRA's own tensors (W + r·m·(alpha/rank)·up@down), with
the block of each key taken from the checkpoint's block table and the layouts typed out by hand.
"""
from __future__ import annotations

import argparse
import json
import re

import pytest
import torch

from lib_merge.arch.blocks import SD1, SDXL
from lib_merge.errors import ArchitectureError, MergeError, OutputError, ParseError
from lib_merge.io.hashing import NoCache
from lib_merge.io.safetensors_io import DTYPES, SafetensorsReader, read_header, save_tensors
from lib_merge.lora import inspect_lora, merge_loras
from lib_merge.lora.bake import bake
from lib_merge.lora.extract import extract
from lib_merge.lora.cli import add_parser
from lib_merge.lora.tag import parse_spec
from tests import synth

L17 = ["BASE", "IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "M00"] + [f"OUT{i:02d}" for i in range(3, 12)]
L12 = ["BASE", "IN04", "IN05", "IN07", "IN08", "M00"] + [f"OUT{i:02d}" for i in range(6)]
L20 = ["BASE"] + [f"IN{i:02d}" for i in range(9)] + ["M00"] + [f"OUT{i:02d}" for i in range(9)]
L26 = ["BASE"] + [f"IN{i:02d}" for i in range(12)] + ["M00"] + [f"OUT{i:02d}" for i in range(12)]
LAYOUT = {12: L12, 17: L17, 20: L20, 26: L26}
# Fewer SDXL layers keep the suite fast; every block and encoder is still there.
SMALL = re.compile(r"transformer_blocks_[2-9]|layers_([2-9]|\d\d)_")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: thread hand-off costs more than the work
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    out = {}
    for arch in ("sd1", "sdxl"):
        for dt, tag in ((torch.float32, "32"), (torch.float16, "16")):
            p = d / f"{arch}_{tag}.safetensors"
            out[arch + tag] = (str(p), synth.write_checkpoint(p, arch, seed=1, dtype=dt))
    return out


def small(t):
    return not SMALL.search(t.name)


def lora_file(path, arch, algo="lora", **kw):
    kw.setdefault("select", small if arch == "sdxl" else None)
    return synth.write_lora(path, arch, algo, **kw)


def delta(sd, t, algo="lora"):
    """ΔW and alpha/rank of one module, from the file's tensors."""
    n = t.name
    if algo == "lora":
        up, down = sd[n + ".lora_up.weight"].float(), sd[n + ".lora_down.weight"].float()
        d = up.reshape(up.shape[0], -1) @ down.reshape(down.shape[0], -1)
        alpha = float(sd[n + ".alpha"]) if n + ".alpha" in sd else down.shape[0]
        return d.reshape(t.shape), alpha / down.shape[0]
    if algo == "loha":
        w = (sd[n + ".hada_w1_a"].float() @ sd[n + ".hada_w1_b"].float()) * \
            (sd[n + ".hada_w2_a"].float() @ sd[n + ".hada_w2_b"].float())
        return w.reshape(t.shape), float(sd[n + ".alpha"]) / sd[n + ".hada_w1_b"].shape[0]
    raise ValueError(algo)


def expected(ck, loras, arch, dtype):
    """{key: tensor} for the keys the LoRAs change. loras: [(sd, targets, algo, te, unet, {block: r})]."""
    a = SDXL if arch == "sdxl" else SD1
    work = {}
    for sd, targets, algo, te, unet, ratios in loras:
        for t in targets:
            block = a.block_of(t.key)
            r = ratios.get(block, 0.0)
            m = te if block == "BASE" else unet
            d, scale = delta(sd, t, algo)
            w = work.setdefault(t.key, ck[t.key].float().clone())
            s = r * m * scale
            if t.part is None:
                w += d * s
            else:
                n = t.shape[0]
                w[t.part * n:(t.part + 1) * n] += d * s
    return {k: v.to(dtype) for k, v in work.items()}


def load_all(path) -> dict[str, torch.Tensor]:
    """Every tensor of a small file, from one read (views into one buffer)."""
    infos, _ = read_header(str(path))
    with open(path, "rb") as f:
        buf = bytearray(f.read())
    out = {}
    for k, i in infos.items():
        dt = DTYPES[i.dtype]
        out[k] = (torch.frombuffer(buf, dtype=dt, count=i.numel, offset=i.start).reshape(i.shape) if i.numel
                  else torch.empty(i.shape, dtype=dt))
    return out


def check(out_path, ck, exp, *, exact=True):
    got_all = load_all(out_path)
    assert list(got_all) == list(ck)
    for k, v in ck.items():
        got = got_all[k]
        assert got.dtype == v.dtype, k
        if k in exp:
            if exact:
                assert torch.equal(got, exp[k]), k
            else:
                torch.testing.assert_close(got, exp[k], rtol=1e-5, atol=1e-5)
        else:  # untargeted keys: byte for byte
            assert got.numpy().tobytes() == v.numpy().tobytes(), k


def assert_files_close(a, b, tol):
    ta, tb = load_all(a), load_all(b)
    assert list(ta) == list(tb)
    for k in ta:
        torch.testing.assert_close(tb[k], ta[k], rtol=tol, atol=tol)


def values(n, start=0.1):
    return [round(start + 0.05 * i, 2) for i in range(n)]


@pytest.mark.parametrize("arch,count,conv", [("sd1", 17, False), ("sd1", 26, True), ("sd1", 17, True),
                                             ("sdxl", 12, False), ("sdxl", 20, True), ("sdxl", 26, True)])
def test_bake_layouts_exact(tmp_path, ckpts, arch, count, conv):
    path, ck = ckpts[arch + "32"]
    sd, targets = lora_file(tmp_path / "l.safetensors", arch, conv=conv, alpha=4.0, rank=2)
    vals = values(count)
    spec = f"{tmp_path / 'l.safetensors'}:0.5:1.5:lbw=" + ",".join(map(str, vals))
    out = str(tmp_path / "o.safetensors")
    res = bake(path, [parse_spec(spec)], out, hash_cache=NoCache())
    ratios = dict(zip(LAYOUT[count], vals))  # blocks the layout does not name: 0 (and 26 -> 20 drops)
    check(out, ck, expected(ck, [(sd, targets, "lora", 0.5, 1.5, ratios)], arch, torch.float32))
    assert res.loras[0].applied + res.loras[0].off == len(targets) and not res.loras[0].not_in_model


def test_blog_example_only_out01_changes_strength(tmp_path, ckpts):
    path, ck = ckpts["sdxl32"]
    sd, targets = lora_file(tmp_path / "l.safetensors", "sdxl")
    out = str(tmp_path / "o.safetensors")
    bake(path, [parse_spec(f"{tmp_path / 'l.safetensors'}:1:1:lbw=1,1,1,1,1,1,1,0.8,1,1,1,1")], out,
         hash_cache=NoCache())
    ratios = {b: 1.0 for b in L20}
    ratios["OUT01"] = 0.8
    check(out, ck, expected(ck, [(sd, targets, "lora", 1, 1, ratios)], "sdxl", torch.float32))


# The presets as users know them (17 values) and their SDXL meanings (12), typed out here.
PRESETS = {("sd1", "OUTD"): (L17, "1,0,0,0,0,0,0,0,1,1,1,1,0,0,0,0,0"),
           ("sd1", "INS"): (L17, "1,1,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0"),
           ("sdxl", "MIDD"): (L12, "1,0,0,1,1,1,1,1,1,0,0,0"),
           ("sdxl", "OUTS"): (L12, "1,0,0,0,0,0,0,0,0,1,1,1"),
           ("sdxl", "ALL0.5"): (L12, ",".join(["0.5"] * 12))}


@pytest.mark.parametrize("arch,preset", list(PRESETS))
def test_bake_presets_exact_fp16(tmp_path, ckpts, arch, preset):
    path, ck = ckpts[arch + "16"]
    sd, targets = lora_file(tmp_path / "l.safetensors", arch, alpha=1.0, dtype=torch.float16)
    out = str(tmp_path / "o.safetensors")
    bake(path, [parse_spec(f"{tmp_path / 'l.safetensors'}:0.75:lbw={preset}")], out, hash_cache=NoCache())
    names, vals = PRESETS[(arch, preset)]
    ratios = dict(zip(names, map(float, vals.split(","))))
    check(out, ck, expected(ck, [(sd, targets, "lora", 0.75, 0.75, ratios)], arch, torch.float16))


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
def test_none_turns_a_locon_fully_off(tmp_path, ckpts, arch):
    path, ck = ckpts[arch + "16"]
    lora_file(tmp_path / "l.safetensors", arch, conv=True)  # includes time_embed, label_emb, conv_in/out
    out = str(tmp_path / "o.safetensors")
    r = bake(path, [parse_spec(f"{tmp_path / 'l.safetensors'}:1:lbw=NONE")], out, hash_cache=NoCache())
    check(out, ck, {})
    assert r.changed_keys == 0 and r.loras[0].applied == 0


def test_two_loras_add_and_dtype_cast(tmp_path, ckpts):
    path, ck = ckpts["sd1" + "32"]
    a = lora_file(tmp_path / "a.safetensors", "sd1", seed=1, alpha=2.0, rank=4)
    b = lora_file(tmp_path / "b.safetensors", "sd1", "loha", seed=2, conv=True)
    specs = [parse_spec(f"{tmp_path / 'a.safetensors'}:0.5:lbw=OUTALL"), parse_spec(f"{tmp_path / 'b.safetensors'}:-1:2")]
    out = str(tmp_path / "o.safetensors")
    bake(path, specs, out, hash_cache=NoCache())
    outall = dict(zip(L17, map(float, "1,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1".split(","))))
    exp = expected(ck, [(*a, "lora", 0.5, 0.5, outall), (*b, "loha", -1, 2, {x: 1.0 for x in L26})], "sd1",
                   torch.float32)
    check(out, ck, exp, exact=False)
    out16 = str(tmp_path / "o16.safetensors")
    bake(path, specs, out16, dtype="fp16", hash_cache=NoCache())
    with SafetensorsReader(out16) as r:
        k = a[1][0].key
        assert r.get(k).dtype == torch.float16
        torch.testing.assert_close(r.get(k), exp[k].half())
        assert r.get("cond_stage_model.transformer.text_model.embeddings.position_ids").dtype == torch.int64


def test_bake_metadata_records_recipe_and_seed(tmp_path, ckpts):
    path, _ = ckpts["sdxl16"]
    lora_file(tmp_path / "l.safetensors", "sdxl")
    out = str(tmp_path / "o.safetensors")
    bake(path, [parse_spec(f"{tmp_path / 'l.safetensors'}:1:lbw=R,R,R,R,R,R,R,R,R,R,R,R")], out, seed=42,
         hash_cache=NoCache())
    _, meta = read_header(out)
    recipe = json.loads(meta["sd_merge_recipe"])
    assert recipe["kind"] == "lora_bake" and recipe["loras"][0]["seed"] == 42
    assert "seed=42" in recipe["loras"][0]["tag"] and len(json.loads(meta["sd_merge_models"])) == 2
    assert recipe["loras"][0]["tag"].startswith("l.safetensors:")  # the file's name, not the local path
    assert str(tmp_path) not in meta["sd_merge_recipe"]


def test_merged_lora_bakes_the_same_as_its_parts(tmp_path, ckpts):
    path, ck = ckpts["sdxl32"]
    lora_file(tmp_path / "a.safetensors", "sdxl", seed=1, alpha=4.0, rank=2, conv=True)
    lora_file(tmp_path / "b.safetensors", "sdxl", seed=2, rank=3, naming="peft", alpha=None)
    lora_file(tmp_path / "c.safetensors", "sdxl", "loha", seed=3)
    parts = [f"{tmp_path / 'a.safetensors'}:0.7:lbw=OUTD", f"{tmp_path / 'b.safetensors'}:0.5",
             f"{tmp_path / 'c.safetensors'}:0.3:0.6:lbw=1,1,1,1,1,1,1,0.8,1,1,1,1"]
    specs = [parse_spec(s) for s in parts]
    bake(path, specs, str(tmp_path / "parts.safetensors"), hash_cache=NoCache())
    m = merge_loras(specs, str(tmp_path / "m.safetensors"), hash_cache=NoCache())
    assert m.concatenated > 0 and m.full > 0  # LoRA+LoRA concatenated, modules with LoHa as full differences
    bake(path, [parse_spec(f"{tmp_path / 'm.safetensors'}:1")], str(tmp_path / "merged.safetensors"),
         hash_cache=NoCache())
    assert_files_close(tmp_path / "parts.safetensors", tmp_path / "merged.safetensors", 1e-5)
    rep = inspect_lora(str(tmp_path / "m.safetensors"))
    assert rep.arch_id == "sdxl" and "LoCon" in rep.format and "full" in rep.format


def test_merge_lossless_concatenation_ranks(tmp_path):
    sa, ta = lora_file(tmp_path / "a.safetensors", "sd1", seed=1, rank=2, alpha=1.0)
    sb, _ = lora_file(tmp_path / "b.safetensors", "sd1", seed=2, rank=3, alpha=3.0)
    merge_loras([parse_spec(f"{tmp_path / 'a.safetensors'}:0.5"), parse_spec(f"{tmp_path / 'b.safetensors'}:2")],
                str(tmp_path / "m.safetensors"), hash_cache=NoCache())
    with SafetensorsReader(str(tmp_path / "m.safetensors")) as r:
        n = ta[0].name
        assert r.get(n + ".lora_down.weight").shape[0] == 5 and float(r.get(n + ".alpha")) == 5.0
        got = r.get(n + ".lora_up.weight").flatten(1) @ r.get(n + ".lora_down.weight").flatten(1)
    da, s_a = delta(sa, ta[0])
    db, s_b = delta(sb, ta[0])
    torch.testing.assert_close(got.reshape(da.shape), da * 0.5 * s_a + db * 2 * s_b)


def test_merge_with_rank_refactorises(tmp_path, ckpts):
    path, ck = ckpts["sd1" + "32"]
    lora_file(tmp_path / "a.safetensors", "sd1", seed=1, rank=2)
    lora_file(tmp_path / "b.safetensors", "sd1", seed=2, rank=2)
    specs = [parse_spec(f"{tmp_path / 'a.safetensors'}:1"), parse_spec(f"{tmp_path / 'b.safetensors'}:1")]
    r = merge_loras(specs, str(tmp_path / "m4.safetensors"), rank=4, hash_cache=NoCache())
    assert r.factorised > 0 and r.concatenated == 0
    bake(path, specs, str(tmp_path / "parts.safetensors"), hash_cache=NoCache())
    bake(path, [parse_spec(f"{tmp_path / 'm4.safetensors'}:1")], str(tmp_path / "m4b.safetensors"),
         hash_cache=NoCache())
    # rank 2 + rank 2 fits in rank 4: reproduced up to float error
    assert_files_close(tmp_path / "parts.safetensors", tmp_path / "m4b.safetensors", 1e-4)
    r1 = merge_loras(specs, str(tmp_path / "m1.safetensors"), rank=1, hash_cache=NoCache())
    with SafetensorsReader(str(tmp_path / "m1.safetensors")) as q:
        assert all(q.get(k).shape[0] == 1 for k in q.tensors if k.endswith("lora_down.weight"))
    assert r1.factorised == r.factorised


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
def test_extract_at_full_rank_reproduces_the_change(tmp_path, ckpts, arch):
    path, ck = ckpts[arch + "32"]
    lora_file(tmp_path / "l.safetensors", arch, conv=True, rank=2,
              select=lambda t: (not SMALL.search(t.name) or arch == "sd1") and not re.search(
                  r"time_emb|label_emb|conv_in|conv_out|input_blocks_0_0|out_2$", t.name))
    tuned = str(tmp_path / "tuned.safetensors")
    bake(path, [parse_spec(f"{tmp_path / 'l.safetensors'}:0.8:1.2")], tuned, hash_cache=NoCache())
    res = extract(tuned, path, str(tmp_path / "x.safetensors"), rank=10 ** 6, conv_rank=10 ** 6, hash_cache=NoCache())
    assert res.modules > 0 and res.unchanged > 0
    again = str(tmp_path / "again.safetensors")
    bake(path, [parse_spec(f"{tmp_path / 'x.safetensors'}:1")], again, hash_cache=NoCache())
    assert_files_close(tuned, again, 1e-4)
    rep = inspect_lora(str(tmp_path / "x.safetensors"))
    assert rep.arch_id == arch and rep.metadata["ss_network_module"] == "networks.lora"
    if arch == "sdxl":
        assert rep.text_encoders == ["te1", "te2"]


def test_extract_low_rank(tmp_path, ckpts):
    path, ck = ckpts["sd132"]
    sd, targets = lora_file(tmp_path / "l.safetensors", "sd1", rank=2)
    tuned = str(tmp_path / "tuned.safetensors")
    bake(path, [parse_spec(f"{tmp_path / 'l.safetensors'}:1")], tuned, hash_cache=NoCache())
    extract(tuned, path, str(tmp_path / "x.safetensors"), rank=2, hash_cache=NoCache())
    with SafetensorsReader(str(tmp_path / "x.safetensors")) as r:
        t = targets[0]
        assert r.get(t.name + ".lora_down.weight").shape[0] == 2  # kohya name, written back as read
        got = r.get(t.name + ".lora_up.weight").flatten(1) @ r.get(t.name + ".lora_down.weight").flatten(1)
        d, s = delta(sd, t)
        torch.testing.assert_close(got.reshape(d.shape), d * s, rtol=1e-4, atol=1e-4)


def test_inspect(tmp_path):
    lora_file(tmp_path / "a.safetensors", "sd1", "lokr", conv=True)
    r = inspect_lora(str(tmp_path / "a.safetensors"))
    assert r.format == "LyCORIS LoKr" and r.layouts == [26] and r.blocks["IN00"] > 0 and r.text_encoders == ["te"]
    lora_file(tmp_path / "b.safetensors", "sdxl", rank=4, alpha=2.0)
    r = inspect_lora(str(tmp_path / "b.safetensors"))
    assert (r.format, r.arch, r.ranks, r.alphas, r.layouts) == ("kohya LoRA", "SDXL", {4: r.modules}, {"2": r.modules},
                                                                 [12, 20])


# ---- errors ------------------------------------------------------------------------------------

def test_bake_errors(tmp_path, ckpts):
    sd1, _ = ckpts["sd116"]
    xl, _ = ckpts["sdxl16"]
    lora_file(tmp_path / "xl.safetensors", "sdxl")
    lora_file(tmp_path / "sd.safetensors", "sd1")
    out = str(tmp_path / "o.safetensors")
    with pytest.raises(ArchitectureError, match="is an SDXL LoRA .* but the model is SD1"):
        bake(sd1, [parse_spec(f"{tmp_path / 'xl.safetensors'}:1")], out, hash_cache=NoCache())
    with pytest.raises(ParseError, match="12 values is the SDXL LoRA layout, but this is an SD1.x LoRA"):
        bake(sd1, [parse_spec(f"{tmp_path / 'sd.safetensors'}:1:lbw=" + ",".join("1" * 12))], out, hash_cache=NoCache())
    with pytest.raises(ParseError, match="17 values is the SD1/SD2 LoRA layout"):
        bake(xl, [parse_spec(f"{tmp_path / 'xl.safetensors'}:1:lbw=" + ",".join("1" * 17))], out, hash_cache=NoCache())
    with pytest.raises(MergeError, match="holds a checkpoint, not a LoRA"):
        bake(sd1, [parse_spec(f"{sd1}:1")], out, hash_cache=NoCache())
    with pytest.raises(MergeError, match="LoRA file not found"):
        bake(sd1, [parse_spec(f"{tmp_path / 'nope.safetensors'}:1")], out, hash_cache=NoCache())
    with pytest.raises(OutputError, match="does not end in .safetensors"):
        bake(sd1, [parse_spec(f"{tmp_path / 'sd.safetensors'}:1")], str(tmp_path / "o.ckpt"), hash_cache=NoCache())
    bake(sd1, [parse_spec(f"{tmp_path / 'sd.safetensors'}:1")], out, hash_cache=NoCache())
    with pytest.raises(OutputError, match="exists already"):
        bake(sd1, [parse_spec(f"{tmp_path / 'sd.safetensors'}:1")], out, hash_cache=NoCache())
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_merge_errors(tmp_path):
    lora_file(tmp_path / "xl.safetensors", "sdxl")
    lora_file(tmp_path / "sd.safetensors", "sd1")
    with pytest.raises(ArchitectureError, match="different models"):
        merge_loras([parse_spec(f"{tmp_path / 'xl.safetensors'}:1"), parse_spec(f"{tmp_path / 'sd.safetensors'}:1")],
                    str(tmp_path / "m.safetensors"), hash_cache=NoCache())
    name = "lora_unet_down_blocks_0_attentions_0_proj_in"
    save_tensors(str(tmp_path / "dora.safetensors"), {f"{name}.lora_down.weight": torch.zeros(2, 8, 1, 1),
                                                      f"{name}.lora_up.weight": torch.zeros(8, 2, 1, 1),
                                                      f"{name}.dora_scale": torch.ones(1, 8, 1, 1)})
    with pytest.raises(MergeError, match="DoRA"):
        merge_loras([parse_spec(f"{tmp_path / 'dora.safetensors'}:1")], str(tmp_path / "m.safetensors"),
                    hash_cache=NoCache())


def test_extract_errors(tmp_path, ckpts):
    sd1, _ = ckpts["sd132"]
    xl, _ = ckpts["sdxl32"]
    with pytest.raises(ArchitectureError, match="is SD1.x but .* is SDXL"):
        extract(sd1, xl, str(tmp_path / "x.safetensors"), rank=4, hash_cache=NoCache())
    with pytest.raises(MergeError, match="do not differ"):
        extract(sd1, sd1, str(tmp_path / "x.safetensors"), rank=4, hash_cache=NoCache())


# ---- CLI handlers --------------------------------------------------------------------------------

def parser():
    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers(dest="command", required=True))
    return p


def run(argv):
    args = parser().parse_args(argv)
    return args.func(args)


def test_cli(tmp_path, ckpts, capsys):
    path, ck = ckpts["sd116"]
    lora_file(tmp_path / "a.safetensors", "sd1")
    lora_file(tmp_path / "b.safetensors", "sd1", seed=5)
    cache = ["--hash-cache", str(tmp_path / "h.json"), "--quiet"]
    assert run(["lora", "bake", path, "-l", f"{tmp_path / 'a.safetensors'}:1:1:lbw=OUTD", "-o",
                str(tmp_path / "o.safetensors"), *cache]) == 0
    assert run(["lora", "merge", "-l", f"{tmp_path / 'a.safetensors'}:0.5", "-l", f"{tmp_path / 'b.safetensors'}:0.5",
                "-o", str(tmp_path / "m.safetensors"), "--rank", "4", *cache]) == 0
    assert run(["lora", "extract", str(tmp_path / "o.safetensors"), path, "--rank", "4", "-o",
                str(tmp_path / "x.safetensors"), "--dtype", "fp16", *cache]) == 0
    capsys.readouterr()
    assert run(["lora", "inspect", str(tmp_path / "x.safetensors"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["arch_id"] == "sd1" and rep["ranks"] == {"4": rep["modules"]}
    assert run(["lora", "inspect", str(tmp_path / "a.safetensors")]) == 0
    assert "kohya LoRA" in capsys.readouterr().out
    with pytest.raises(ParseError, match="write lbw=OUTD"):
        run(["lora", "bake", path, "-l", f"{tmp_path / 'a.safetensors'}:1:OUTD", "-o", str(tmp_path / "p.safetensors"),
             *cache])
    with pytest.raises(ParseError, match="--conv-rank needs --rank"):
        run(["lora", "merge", "-l", f"{tmp_path / 'a.safetensors'}:1", "-o", str(tmp_path / "q.safetensors"),
             "--conv-rank", "2", *cache])
    presets = tmp_path / "p.txt"
    presets.write_text("MINE:1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1\n")
    assert run(["lora", "bake", path, "-l", f"{tmp_path / 'a.safetensors'}:1:1:lbw=MINE", "--presets", str(presets),
                "-o", str(tmp_path / "r.safetensors"), *cache]) == 0


def test_main_cli_turns_mistakes_into_exit_2(tmp_path, ckpts, capsys):
    from lib_merge.cli import main
    path, _ = ckpts["sd116"]
    lora_file(tmp_path / "a.safetensors", "sd1")
    code = main(["lora", "bake", path, "-l", f"{tmp_path / 'a.safetensors'}:1:1:lbw=1,1,1", "-o",
                 str(tmp_path / "o.safetensors"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "3 block weights" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bake_from_ckpt_and_stray_keys(tmp_path, ckpts):
    path, ck = ckpts["sd132"]
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": ck}, ckpt)
    sd, targets = lora_file(tmp_path / "a.safetensors", "sd1")
    sd["lora_te_text_model_encoder_layers_5_mlp_fc9.alpha"] = torch.tensor(1.0)  # an alpha with no weights
    sd["some_trainer_note"] = torch.zeros(1)  # a key of no module
    save_tensors(str(tmp_path / "a.safetensors"), sd)
    out = str(tmp_path / "o.safetensors")
    bake(str(ckpt), [parse_spec(f"{tmp_path / 'a.safetensors'}:1")], out, hash_cache=NoCache())
    check(out, ck, expected(ck, [(sd, targets, "lora", 1, 1, {b: 1.0 for b in L26})], "sd1", torch.float32))
    assert inspect_lora(str(tmp_path / "a.safetensors")).unknown_keys == ["some_trainer_note"]


def test_inspect_when_names_do_not_tell(tmp_path):
    name = "lora_unet_mid_block_attentions_0_proj_in"
    save_tensors(str(tmp_path / "a.safetensors"), {f"{name}.lora_down.weight": torch.zeros(2, 8, 1, 1),
                                                   f"{name}.lora_up.weight": torch.zeros(8, 2, 1, 1)})
    r = inspect_lora(str(tmp_path / "a.safetensors"))
    assert r.arch.startswith("unknown") and r.blocks == {"M00": 1}


def test_core_does_not_import_the_webui_or_gradio():
    """Static check of every import in lib_merge/lora (the suite may import gradio elsewhere)."""
    import ast
    import pathlib
    root = pathlib.Path(__file__).parents[1] / "lib_merge" / "lora"
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for n in names:
                assert n.split(".")[0] not in ("modules", "modules_forge", "gradio"), f"{path.name} imports {n}"
