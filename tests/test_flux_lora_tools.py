"""Flux LoRAs through merge, extract, inspect, the webui's per-module strengths and the CLI.

Expected values in float64 from the logical LoRAs of tests/flux_lora_synth.py; the merged and the
extracted files are checked by their own tensors (up@down·alpha/rank per kohya name) and by baking
them, against the sum the inputs stand for.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lib_merge.arch.flux_layouts import FLUX_TINY, checkpoint
from lib_merge.errors import ArchitectureError
from lib_merge.io.safetensors_io import save_tensors
from lib_merge.lora import inspect_lora, merge_loras
from lib_merge.lora.bake import bake
from lib_merge.lora.extract import extract
from lib_merge.lora.strengths import module_strengths
from lib_merge.lora.tag import parse_spec, parse_tag
from tests import flux_lora_synth as fl
from tests.test_flux_lora import BLOCKS61, _check, _lbw61, _write, ckpt  # noqa: F401  (fixture)


def _delta_by_key(tensors) -> dict[str, np.ndarray]:
    """ΔW per model key of a kohya-named Flux LoRA, from its own tensors (names typed out by hand)."""
    out = {}
    for k in tensors:
        if not k.endswith(".lora_down.weight"):
            continue
        n = k[:-len(".lora_down.weight")]
        down, up = tensors[k].double().numpy(), tensors[n + ".lora_up.weight"].double().numpy()
        a = float(tensors[n + ".alpha"]) if n + ".alpha" in tensors else down.shape[0]
        out[n] = up @ down * (a / down.shape[0])
    return out


def _kohya_of(key: str) -> str:
    if key.startswith("text_encoders.clip_l.transformer."):
        return "lora_te1_" + key[len("text_encoders.clip_l.transformer."):-len(".weight")].replace(".", "_")
    if key.startswith("text_encoders.t5xxl.transformer."):
        return "lora_te2_" + key[len("text_encoders.t5xxl.transformer."):-len(".weight")].replace(".", "_")
    return "lora_unet_" + key[len(fl.U):-len(".weight")].replace(".", "_")


@pytest.mark.parametrize("rank", [None, 16])
def test_merge_kohya_and_diffusers_flux_loras(ckpt, rank):
    path, sd, d = ckpt
    a = fl.logical(seed=21, every=2, alpha_is_rank=False)
    b = [m for m in fl.logical(seed=22, every=3) if not m.bfl.startswith("t5:")]
    pa = _write(d, "ma.safetensors", fl.write(a, "kohya"))
    pb = _write(d, "mb.safetensors", fl.write(b, "diffusers"))
    va, vb = _lbw61(7), _lbw61(8)
    ra, rb = dict(zip(BLOCKS61, va)), dict(zip(BLOCKS61, vb))
    out = str(d / f"merged_{rank}.safetensors")
    res = merge_loras([parse_spec(f"{pa}:0.6:lbw={','.join(map(str, va))}"),
                       parse_spec(f"{pb}:-1.1:lbw={','.join(map(str, vb))}")], out, rank=rank, overwrite=True)
    assert res.skipped == [] and res.arch.label == "Flux.1"
    got = load_file(out)
    names = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in got}
    assert all(n.startswith(("lora_unet_double_blocks_", "lora_unet_single_blocks_", "lora_unet_img_in",
                             "lora_unet_txt_in", "lora_unet_time_in", "lora_unet_vector_in", "lora_unet_guidance_in",
                             "lora_unet_final_layer", "lora_te1_", "lora_te2_")) for n in names), sorted(names)[:5]
    # the merged file's ΔW per key is the sum the two inputs stand for (W cancels out)
    zero = {k: torch.zeros_like(v) for k, v in sd.items()}
    exp = fl.expected(zero, [(a, 0.6, 0.6, 0), (b, -1.1, -1.1, 1)], lambda i, blk, bfl: (ra, rb)[i][blk])
    deltas = _delta_by_key(got)
    assert set(deltas) == {_kohya_of(k) for k in exp}
    for k, v in exp.items():
        np.testing.assert_allclose(deltas[_kohya_of(k)], v, atol=1e-4, err_msg=k)
    # and baked at ratio 1 it gives the model baking both inputs gives
    both = str(d / f"both_{rank}.safetensors")
    bake(path, [parse_spec(f"{pa}:0.6:lbw={','.join(map(str, va))}"),
                parse_spec(f"{pb}:-1.1:lbw={','.join(map(str, vb))}")], both, overwrite=True)
    once = str(d / f"once_{rank}.safetensors")
    bake(path, [parse_spec(f"{out}:1")], once, overwrite=True)
    x, y = load_file(both), load_file(once)
    for k in x:
        assert torch.allclose(x[k], y[k], atol=1e-4), k


def _tuned(sd, seed=31, rank=2):
    """base + a rank-2 change on every layer kohya's Flux trainer targets (typed out here) and on
    layers it does not (the embedders, the final layer, a T5 layer, which extract leaves out)."""
    g = torch.Generator().manual_seed(seed)
    out = dict(sd)
    targets = []
    for i in range(FLUX_TINY.n_double):
        for s in ("img", "txt"):
            targets += [f"double_blocks.{i}.{s}_{p}" for p in ("mod.lin", "attn.qkv", "attn.proj", "mlp.0", "mlp.2")]
    for i in range(FLUX_TINY.n_single):
        targets += [f"single_blocks.{i}.{p}" for p in ("linear1", "linear2", "modulation.lin")]
    keys = [fl.U + t + ".weight" for t in targets]
    keys += [f"text_encoders.clip_l.transformer.text_model.encoder.layers.{j}.{p}.weight" for j in range(2)
             for p in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                       "mlp.fc1", "mlp.fc2")]
    for k in keys + [fl.U + "img_in.weight", fl.U + "final_layer.linear.weight",
                     "text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.q.weight"]:
        o, i_ = sd[k].shape
        out[k] = sd[k] + torch.randn(o, rank, generator=g) @ torch.randn(rank, i_, generator=g) * 0.1
    return out, keys


def test_extract_from_two_tiny_flux_checkpoints(ckpt):
    path, sd, d = ckpt
    tuned, keys = _tuned(sd)
    tp = _write(d, "tuned.safetensors", tuned)
    out = str(d / "extracted.safetensors")
    res = extract(tp, path, out, rank=2, overwrite=True)
    got = load_file(out)
    assert res.modules == len(keys)
    assert {k[:-len(".lora_down.weight")] for k in got if k.endswith(".lora_down.weight")} == \
        {_kohya_of(k) for k in keys}
    assert load_file(out) and res.metadata["ss_base_model_version"] == "flux1"
    baked = str(d / "rebaked.safetensors")
    bake(path, [parse_spec(f"{out}:1")], baked, overwrite=True)
    b = load_file(baked)
    for k in keys:
        assert torch.allclose(b[k], tuned[k], atol=1e-4), k
    for k in (fl.U + "img_in.weight", fl.U + "final_layer.linear.weight"):
        assert torch.equal(b[k], sd[k])
    sd1 = str(d / "sd1.safetensors")
    from tests import synth
    synth.write_checkpoint(sd1, "sd1", seed=1)
    with pytest.raises(ArchitectureError, match="Flux.1 .* but .* is SD1"):
        extract(tp, sd1, str(d / "no.safetensors"), rank=2, overwrite=True)


def test_inspect_flux_loras(ckpt):
    _, _, d = ckpt
    mods = fl.logical(seed=41, rank=4)
    for fmt, label in (("kohya", "kohya"), ("diffusers", "diffusers / PEFT"), ("onetrainer", "OneTrainer"),
                       ("bfl", "BFL names")):
        p = _write(d, f"i_{fmt}.safetensors", fl.write(mods, fmt))
        r = inspect_lora(p)
        assert r.arch == "Flux.1" and r.format == f"Flux LoRA ({label})" and r.layouts == [61]
        assert list(r.blocks) == [b for b in BLOCKS61 if b in r.blocks]  # in slot order
        assert set(r.blocks) == {fl.block(m.bfl) for m in mods} - ({"T5"} if fmt == "diffusers" else set())
        assert r.unplaced == [] and r.text_encoders == (["clip_l"] if fmt == "diffusers" else ["clip_l", "t5xxl"])
    fused = inspect_lora(str(d / "i_kohya.safetensors"))
    split = inspect_lora(str(d / "i_diffusers.safetensors"))
    assert fused.blocks["D00"] == 10 and split.blocks["D00"] == 14  # 10 fused weights = 14 diffusers modules
    assert fused.blocks["S00"] == 3 and split.blocks["S00"] == 6


def test_webui_names_get_the_block_of_their_model_weight():
    """Forge keeps patches under model keys, LBW underscores them, files have their own names: all
    take the model weight's block."""
    vals = _lbw61(9)
    ratio = dict(zip(BLOCKS61, vals))
    tag = parse_tag(f"<lora:f:0.5:2:lbw={','.join(map(str, vals))}>")
    names = {"diffusion_model.double_blocks.3.img_attn.qkv.weight": ("D03", False),
             "diffusion_model.single_blocks.20.linear1.weight": ("S20", False),
             "diffusion_model_single_blocks_21_linear2_weight": ("S21", False),
             "transformer.single_transformer_blocks.5.attn.to_q.lora_A.weight": ("S05", False),
             "lora_unet_double_blocks_18_txt_mlp_2.lora_up.weight": ("D18", False),
             "diffusion_model.final_layer.adaLN_modulation.1.weight": ("OUT", False),
             "diffusion_model.guidance_in.in_layer.bias": ("IN", False),
             "diffusion_model.double_blocks.4.img_attn.norm.query_norm.scale": ("D04", False),
             "clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight": ("CLIP", True),
             "t5xxl.transformer.encoder.block.3.layer.1.DenseReluDense.wo.weight": ("T5", True),
             "lora_te2_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight": ("T5", True)}
    s = module_strengths(tag, list(names))  # Flux is told from the names
    assert s.unmatched == ()
    for n, (blk, te) in names.items():
        ms = s.modules[n]
        assert (ms.block, ms.is_te) == (blk, te), n
        assert ms.strength == pytest.approx(ratio[blk] * (0.5 if te else 2.0)), n
    # elements match the model weight's name, so a split to_q and the fused qkv answer `img_attn` alike
    from lib_merge.lora.presets import PresetBook
    book = PresetBook.load(lbwe_text="Q:D03:img_attn:0\n")
    q = module_strengths(parse_tag("<lora:f:1:lbwe=Q>", book),
                         ["transformer.transformer_blocks.3.attn.to_q.lora_A.weight",
                          "diffusion_model.double_blocks.3.img_attn.qkv.weight",
                          "diffusion_model.double_blocks.3.txt_attn.qkv.weight"], arch="flux", presets=book)
    assert [m.strength for m in q.modules.values()] == [0.0, 0.0, 1.0]
    # and a diffusers-only word (`to_q`) is no Flux element: it would split one weight's ratio by format
    book = PresetBook.load(lbwe_text="T:D03:to_q:0\n")
    t = module_strengths(parse_tag("<lora:f:1:lbwe=T>", book),
                         ["transformer.transformer_blocks.3.attn.to_q.lora_A.weight"], arch="flux", presets=book)
    assert [m.strength for m in t.modules.values()] == [1.0]


def test_cli_on_flux_loras(ckpt, tmp_path, capsys):
    from lib_merge.cli import main
    path, sd, d = ckpt
    p = _write(tmp_path, "c.safetensors", fl.write(fl.logical(seed=51, every=4), "kohya"))
    q = _write(tmp_path, "c2.safetensors", fl.write(fl.logical(seed=52, every=5), "diffusers"))
    v = ",".join(["1"] * 3 + ["0.5"] * 19 + ["R"] * 38 + ["1"])
    args = ["--quiet", "--hash-cache", str(tmp_path / "h.json")]
    assert main(["lora", "bake", path, "-l", f"{p}:1:1:lbw={v}", "-o", str(tmp_path / "b.safetensors"), "--seed", "3",
                 *args]) == 0
    assert main(["lora", "merge", "-l", f"{p}:0.5:lbw=FLUXALL", "-l", f"{q}:0.5", "-o", str(tmp_path / "m.safetensors"),
                 *args]) == 0
    assert main(["lora", "extract", str(tmp_path / "b.safetensors"), path, "--rank", "2", "-o",
                 str(tmp_path / "x.safetensors"), *args]) == 0
    capsys.readouterr()
    assert main(["lora", "inspect", str(tmp_path / "m.safetensors")]) == 0
    text = capsys.readouterr().out
    assert "Flux LoRA (kohya)" in text and "Flux.1" in text and "61 (Flux.1 LoRA" in text
    for bad, needle in ((",".join(["1"] * 26), "26 values is the SD1/SD2 full"), ("INS", "preset 'INS' is for"),
                        (",".join(["1"] * 12), "12 values is the SDXL LoRA")):
        code = main(["lora", "bake", path, "-l", f"{p}:1:1:lbw={bad}", "-o", str(tmp_path / "n.safetensors"), *args])
        err = capsys.readouterr().err
        assert code == 2 and needle in err and "Flux.1" in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1


def test_chroma_and_wrong_family(ckpt, tmp_path):
    """A Flux LoRA baked into Chroma (no modulation layers): the rest is applied, the mod modules are
    reported; an SD1 LoRA on a Flux checkpoint and a Flux LoRA on SD1 are refused naming both."""
    _, _, d = ckpt
    g = torch.Generator().manual_seed(3)
    chroma = {k: torch.randn(s, generator=g) for k, s in checkpoint(FLUX_TINY, "chroma", all_in_one=True).items()}
    cp = _write(tmp_path, "chroma.safetensors", chroma)
    mods = [m for m in fl.logical(seed=61) if not m.bfl.startswith("t5:")]
    lp = _write(tmp_path, "k.safetensors", fl.write(mods, "kohya"))
    out = str(tmp_path / "c.safetensors")
    res = bake(cp, [parse_spec(f"{lp}:1")], out, overwrite=True)
    absent = {m.bfl for m in mods if "_mod.lin" in m.bfl or "modulation" in m.bfl
              or m.bfl.startswith(("time_in", "vector_in", "guidance_in"))}
    assert {n[len("lora_unet_"):] for n in res.loras[0].not_in_model} == {b.replace(".", "_") for b in absent}
    kept = [m for m in mods if m.bfl not in absent]
    _check(out, chroma, fl.expected(chroma, [(kept, 1.0, 1.0, 0)], lambda i, b, bfl: 1.0))
    from tests import synth
    sd1 = str(tmp_path / "sd1.safetensors")
    synth.write_checkpoint(sd1, "sd1", seed=1)
    synth.write_lora(tmp_path / "sdl.safetensors", "sd1")
    with pytest.raises(ArchitectureError, match="is an SD1.x LoRA .* but the model is Chroma.* or a Chroma"):
        bake(cp, [parse_spec(f"{tmp_path / 'sdl.safetensors'}:1")], str(tmp_path / "n.safetensors"))
    with pytest.raises(ArchitectureError, match="is a Flux.1 LoRA .* but the model is SD1"):
        bake(sd1, [parse_spec(f"{lp}:1")], str(tmp_path / "n.safetensors"))
