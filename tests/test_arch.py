"""Architectures: real layouts, key -> block mapping (REFERENCE §1), detection from key names."""
from __future__ import annotations

import math
import re

import pytest

from lib_merge.arch import SD1, SD2, SDXL, Component, detect
from lib_merge.arch import layouts as L
from lib_merge.errors import ArchitectureError

U = "model.diffusion_model."


def params(d, prefix):
    return sum(math.prod(s) for k, s in d.items() if k.startswith(prefix))


def test_real_layouts_match_the_published_models():
    # facts about the released files: key counts and parameter counts
    sd15 = L.checkpoint("sd1")
    assert len(sd15) == 1131
    assert params(sd15, U) == 859_520_964
    assert params(sd15, "first_stage_model.") == 83_653_863
    xl = L.checkpoint("sdxl")
    assert len(xl) == 2515
    assert params(xl, U) == 2_567_463_684
    assert params(xl, "conditioner.embedders.1.") == 694_659_841  # bigG text tower with projection
    # fp16 file sizes users see: 2.13 GB and 6.94 GB
    assert round(2 * sum(math.prod(s) for s in sd15.values()) / 1e9, 2) == 2.13
    assert round(2 * sum(math.prod(s) for s in xl.values()) / 1e9, 2) == 6.94


def test_tiny_layouts_keep_every_real_key():
    for arch in ("sd1", "sd2", "sdxl"):
        assert set(L.checkpoint(arch, L.TINY)) == set(L.checkpoint(arch, L.REAL))


def expected_block(key: str, n_blocks: int) -> str | None:
    """REFERENCE §1 written out again, independently of the library."""
    if key.startswith(("cond_stage_model.", "conditioner.", "first_stage_model.")):
        return "BASE"
    if not key.startswith(U):
        return None
    rest = key[len(U):]
    if rest.startswith(("time_embed.", "label_emb.")):
        return "IN00"
    if rest.startswith("out."):
        return f"OUT{n_blocks - 1:02d}"
    if rest.startswith("middle_block."):
        return "M00"
    m = re.match(r"(input|output)_blocks\.(\d+)\.", rest)
    return f"{'IN' if m.group(1) == 'input' else 'OUT'}{int(m.group(2)):02d}"


@pytest.mark.parametrize("arch,n", [(SD1, 12), (SD2, 12), (SDXL, 9)])
def test_every_key_maps_to_its_block(arch, n):
    layout = L.checkpoint(arch.id)
    seen = set()
    for key in layout:
        got = arch.block_of(key)
        assert got == expected_block(key, n), key
        seen.add(got)
    assert seen == set(arch.blocks)  # every block has keys
    assert len(arch.blocks) == (26 if n == 12 else 20)


def test_block_examples():
    assert SD1.block_of(U + "time_embed.0.weight") == "IN00"
    assert SD1.block_of(U + "out.2.weight") == "OUT11"
    assert SDXL.block_of(U + "out.2.weight") == "OUT08"
    assert SDXL.block_of(U + "label_emb.0.0.weight") == "IN00"
    assert SDXL.block_of(U + "middle_block.1.transformer_blocks.3.attn1.to_q.weight") == "M00"
    assert SDXL.block_of(U + "input_blocks.8.1.proj_in.weight") == "IN08"
    assert SD1.block_of("alphas_cumprod") is None
    assert SD1.component("first_stage_model.decoder.conv_in.weight") is Component.VAE
    assert SDXL.component("conditioner.embedders.1.model.ln_final.weight") is Component.TEXT_ENCODER
    assert SD1.component("model_ema.decay") is Component.OTHER


def shapes(arch, **kw):
    return L.checkpoint(arch, L.TINY, **kw)


def test_detect_architectures_and_variants():
    assert detect(shapes("sd1")).arch is SD1
    assert detect(shapes("sd2")).arch is SD2
    assert detect(shapes("sd2")).prediction == "unknown"
    info = detect(shapes("sdxl"))
    assert (info.arch, info.variant, info.pruned, info.prediction) == (SDXL, "standard", None, "eps")
    assert detect(shapes("sd1", in_channels=9)).variant == "inpaint"
    assert detect(shapes("sdxl", in_channels=9)).label == "SDXL inpaint"
    assert detect(shapes("sd1", in_channels=8)).variant == "pix2pix"
    vp = {**shapes("sdxl"), "v_pred": (), "ztsnr": ()}
    assert detect(vp).prediction == "v"
    assert detect(shapes("sd1", with_vae=False)).has_vae is False


def test_detect_pruned_sdxl():
    ssd = detect(shapes("sdxl", variant="ssd1b"))
    assert ssd.arch is SDXL and ssd.pruned == "SSD-1B"
    # a Vega-like model: fewer layers again, recognised as SDXL all the same
    vega = {k: v for k, v in shapes("sdxl", variant="ssd1b").items()
            if not re.search(r"output_blocks\.[01]\.1\.transformer_blocks\.[1-3]\.", k)}
    info = detect(vega)
    assert info.arch is SDXL and info.pruned.startswith("pruned SDXL (")


def test_flux_and_non_checkpoints_are_refused_clearly():
    with pytest.raises(ArchitectureError, match="bitsandbytes NF4/FP4 .* cannot be merged"):
        detect({"double_blocks.0.img_attn.qkv.weight": (3, 3),
                "double_blocks.0.img_attn.qkv.weight.absmax": (3,)}, "flux-nf4.safetensors")
    with pytest.raises(ArchitectureError, match="looks like a LoRA"):
        detect({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 8)}, "x.safetensors")
