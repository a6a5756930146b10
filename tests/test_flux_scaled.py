"""fp8 "scaled" Flux checkpoints (de-scaled on read, re-scaled on write) and formats refused by name.

The layouts are ComfyUI's, read in its source:
- comfyanonymous/ComfyUI comfy/model_detection.py @ 006dd0ae6cf66f66ea0d2ad7db73dea920de9936
  (model_config_from_unet): a `scaled_fp8` key under the diffusion model's prefix marks a legacy
  scaled file; its dtype is the weights' fp8 type (float32 meaning e4m3fn). Per Linear the weight's
  scale is `<layer>.scale_weight` (and `<layer>.scale_input`), which Comfy's convert_old_quants renames
  to `<layer>.weight_scale` / `.input_scale` with a `<layer>.comfy_quant` uint8 JSON {"format": ...};
- comfy/ops.py @ 003124c1f6ca4b93066c672cb3f247007c17a038 (mixed_precision_ops): per layer
  `comfy_quant` + `weight_scale` for float8_e4m3fn/e5m2, `weight_scale_2` + block `weight_scale` for nvfp4;
- comfy/quant_ops.py @ 0411153ac63b0983342bca73362a8f95e1da59ac (TensorCoreFP8Layout): dequantize is
  `qdata.to(orig_dtype) * scale`; quantize takes `scale = amax(|w|) / finfo(fp8).max` and stores
  `(w * (1 / scale)).to(fp8)`.
The files here are built with those key names on tiny Flux.1 dev layouts; expected values are
computed in float64 from the stored fp8 bytes and scales, independently of lib_merge.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from lib_merge.arch.flux_layouts import FLUX_TINY, checkpoint
from lib_merge.errors import ArchitectureError, ModelFileError, RecipeError
from lib_merge.io.safetensors_io import save_tensors
from lib_merge.merge.engine import merge
from lib_merge.merge.recipe import Recipe

U = "model.diffusion_model."
E4M3 = torch.float8_e4m3fn
QKV = U + "double_blocks.1.img_attn.qkv"
LIN1 = U + "single_blocks.2.linear1"


def _is_linear_weight(key: str, shape) -> bool:  # what Comfy's scaled files quantise: the transformer's Linears
    return key.startswith(U) and key.endswith(".weight") and len(shape) == 2 and (
        "double_blocks." in key or "single_blocks." in key)


def scaled_flux(seed: int, fmt: str = "legacy", fp8=E4M3) -> dict[str, torch.Tensor]:
    """A tiny all-in-one Flux.1 dev file in Comfy's scaled-fp8 layout: fp8 Linear weights with per-tensor
    scales, the rest bf16."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for key, shape in checkpoint(FLUX_TINY, "dev", True).items():
        w = torch.randn(shape, generator=g) * (0.02 + seed * 0.01)
        if not _is_linear_weight(key, shape):
            sd[key] = w.to(torch.bfloat16)
            continue
        layer = key[:-len(".weight")]
        scale = w.abs().max() / torch.finfo(fp8).max
        sd[key] = (w / scale).to(fp8)
        if fmt == "legacy":
            sd[layer + ".scale_weight"] = scale.reshape(()).float()
            sd[layer + ".scale_input"] = torch.ones((), dtype=torch.float32)
        else:
            sd[layer + ".weight_scale"] = scale.reshape(()).float()
            conf = json.dumps({"format": "float8_e4m3fn" if fp8 == E4M3 else "float8_e5m2"}).encode()
            sd[layer + ".comfy_quant"] = torch.tensor(list(conf), dtype=torch.uint8)
    if fmt == "legacy":
        sd[U + "scaled_fp8"] = torch.empty(0, dtype=fp8)
    return sd


def real(sd: dict, key: str) -> torch.Tensor:
    """The weight a scaled file stands for, in float64: fp8 value times its scale (Comfy's dequantize)."""
    layer = key[:-len(".weight")]
    for sk in (layer + ".scale_weight", layer + ".weight_scale"):
        if sk in sd:
            return sd[key].double() * sd[sk].double()
    return sd[key].double()


def _files(tmp_path, *sds):
    paths = []
    for i, sd in enumerate(sds):
        p = tmp_path / f"m{i}.safetensors"
        save_tensors(str(p), sd)
        paths.append(str(p))
    return paths


def test_descaled_on_read_written_plain_bf16(tmp_path):
    a, b = scaled_flux(1), scaled_flux(2)
    pa, pb = _files(tmp_path, a, b)
    out = tmp_path / "o.safetensors"
    merge(Recipe((pa, pb), alpha=0.3, dtype="bf16"), str(out))
    got = load_file(str(out))
    assert not any(k.endswith(("scale_weight", "scale_input", "scaled_fp8")) for k in got)  # a plain file
    for key in (QKV + ".weight", LIN1 + ".weight", U + "img_in.weight"):
        want = 0.7 * real(a, key) + 0.3 * real(b, key)
        assert got[key].dtype == torch.bfloat16
        assert torch.allclose(got[key].double(), want, rtol=2 ** -8, atol=1e-7), key


def test_rescaled_on_write_when_the_output_stays_scaled(tmp_path):
    a, b = scaled_flux(1), scaled_flux(2)
    pa, pb = _files(tmp_path, a, b)
    out = tmp_path / "o.safetensors"
    merge(Recipe((pa, pb), alpha=0.3), str(out))  # dtype keep: A's scaled e4m3
    got = load_file(str(out))
    assert set(got) == set(a)  # every scale, input scale and the marker are there
    assert got[U + "scaled_fp8"].dtype == E4M3 and got[U + "scaled_fp8"].numel() == 0
    for layer in (QKV, LIN1, U + "double_blocks.0.txt_mlp.2"):
        want = 0.7 * real(a, layer + ".weight") + 0.3 * real(b, layer + ".weight")
        scale = got[layer + ".scale_weight"]
        assert scale.dtype == torch.float32 and scale.shape == ()
        assert float(scale) == pytest.approx(float(want.abs().max()) / 448.0, rel=1e-6)  # amax / e4m3 max
        assert got[layer + ".weight"].dtype == E4M3
        back = got[layer + ".weight"].double() * float(scale)
        # e4m3 keeps 3 mantissa bits: within half a step (2^-4 relative), or the smallest subnormal near 0
        assert torch.all((back - want).abs() <= want.abs() * 2 ** -4 + float(scale) * 2 ** -9), layer
        assert torch.equal(got[layer + ".scale_input"], a[layer + ".scale_input"])  # A's, untouched
    assert got[U + "img_in.weight"].dtype == torch.bfloat16  # not a scaled tensor: as before


def test_mixed_precision_layout_with_a_plain_b(tmp_path):
    a = scaled_flux(3, fmt="mixed")
    b = {k: (real(scaled_flux(4), k).to(torch.bfloat16) if v.dtype == E4M3 else v)
         for k, v in scaled_flux(4).items() if not k.endswith(("scale_weight", "scale_input", "scaled_fp8"))}
    pa, pb = _files(tmp_path, a, b)
    out = tmp_path / "o.safetensors"
    merge(Recipe((pa, pb), alpha=0.5), str(out))
    got = load_file(str(out))
    key = QKV + ".weight"
    want = 0.5 * real(a, key) + 0.5 * b[key].double()
    scale = float(got[QKV + ".weight_scale"])
    assert scale == pytest.approx(float(want.abs().max()) / 448.0, rel=1e-6)
    assert torch.all((got[key].double() * scale - want).abs() <= want.abs() * 2 ** -4 + scale * 2 ** -9)
    assert bytes(got[QKV + ".comfy_quant"].tolist()) == b'{"format": "float8_e4m3fn"}'  # A's, copied


def test_excluded_blocks_keep_a_exactly_or_descaled(tmp_path):
    a, b = scaled_flux(5), scaled_flux(6)
    pa, pb = _files(tmp_path, a, b)
    key, sk = U + "double_blocks.0.img_attn.qkv.weight", U + "double_blocks.0.img_attn.qkv.scale_weight"
    keep, plain = tmp_path / "k.safetensors", tmp_path / "p.safetensors"
    merge(Recipe((pa, pb), alpha=0.5, exclude="D00"), str(keep))
    merge(Recipe((pa, pb), alpha=0.5, exclude="D00", dtype="fp32"), str(plain))
    k, p = load_file(str(keep)), load_file(str(plain))
    assert torch.equal(k[key].view(torch.uint8), a[key].view(torch.uint8)) and torch.equal(k[sk], a[sk])
    assert torch.allclose(p[key].double(), real(a, key), rtol=1e-7, atol=0)


def test_cosine_mode_runs_on_scaled_inputs(tmp_path):
    pa, pb = _files(tmp_path, scaled_flux(7), scaled_flux(8))
    out = tmp_path / "c.safetensors"
    merge(Recipe((pa, pb), calc="cosine_a", alpha=0.5, dtype="bf16"), str(out))
    assert all(torch.isfinite(t.float()).all() for t in load_file(str(out)).values())


@pytest.mark.parametrize("change, match", [
    (lambda sd: sd.update({QKV + ".weight_scale_2": torch.ones(())}), "NVFP4 \\(Comfy mixed precision\\)"),
    (lambda sd: sd.update({QKV + ".scale_weight": torch.ones(sd[QKV + ".weight"].shape[0])}),
     "per-row/per-block scales"),
    (lambda sd: sd.update({U + "img_in.scale_weight": torch.ones(())}), "scaled BF16 weights"),
    (lambda sd: sd.update({U + "img_in.extra.scale_weight": torch.ones(())}), "no weight"),
])
def test_scaled_formats_not_understood_are_refused_in_one_line(tmp_path, change, match):
    a = scaled_flux(1)
    change(a)
    pa, pb = _files(tmp_path, a, scaled_flux(2))
    with pytest.raises(ArchitectureError, match=match) as e:
        merge(Recipe((pa, pb), alpha=0.5), str(tmp_path / "o.safetensors"))
    assert "\n" not in str(e.value) and "Fix:" in str(e.value)
    assert not (tmp_path / "o.safetensors").exists()


def test_the_other_fp8_type_for_a_scaled_a_is_refused(tmp_path):
    pa, pb = _files(tmp_path, scaled_flux(1), scaled_flux(2))
    with pytest.raises(RecipeError, match="fp8 scaled \\(legacy, F8_E4M3\\).*Fix: use --dtype keep or fp8_e4m3fn"):
        merge(Recipe((pa, pb), alpha=0.5, dtype="fp8_e5m2"), str(tmp_path / "o.safetensors"))


def test_gguf_is_refused_naming_the_format(tmp_path):
    gguf = tmp_path / "flux1-dev-Q8_0.gguf"
    gguf.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 64)  # GGUF magic, version 3
    disguised = tmp_path / "flux1-dev-Q4_K.safetensors"  # renamed: told by its magic bytes
    disguised.write_bytes(gguf.read_bytes())
    (pb,) = _files(tmp_path, scaled_flux(2))
    for p in (gguf, disguised):
        with pytest.raises(ModelFileError, match=f"{p.name} is a GGUF quantised model.*Fix: merge the bf16"):
            merge(Recipe((str(p), pb), alpha=0.5), str(tmp_path / "o.safetensors"))
    r = subprocess.run([sys.executable, "-m", "lib_merge", "merge", str(gguf), pb, "-o", str(tmp_path / "c.safetensors")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "GGUF quantised model" in r.stderr and "Traceback" not in r.stderr


def test_zero_size_tensors_first_or_alone_are_written(tmp_path):
    """safetensors orders a file's data as its writer chose: Comfy's empty `scaled_fp8` marker can come
    first. A scaled file whose marker leads, and a file of empty tensors only, both merge/save."""
    from lib_merge.io.safetensors_io import SafetensorsReader
    a = scaled_flux(1)
    marker = U + "scaled_fp8"
    lead = {marker: a.pop(marker), **a}
    pa, pb = _files(tmp_path, lead, scaled_flux(2))
    with SafetensorsReader(pa) as r:
        assert next(iter(r.tensors)) == marker  # really first in the file
    out = tmp_path / "o.safetensors"
    merge(Recipe((pa, pb), alpha=0.5), str(out))
    got = load_file(str(out))
    assert got[marker].numel() == 0 and set(got) == set(lead)
    empty = tmp_path / "empty.safetensors"
    save_tensors(str(empty), {"0": torch.zeros(0), "1": torch.zeros(0, 3)})
    assert {k: tuple(v.shape) for k, v in load_file(str(empty)).items()} == {"0": (0,), "1": (0, 3)}
