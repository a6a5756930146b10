"""Flux LoRA names in the kohya, diffusers/PEFT (ai-toolkit), OneTrainer and BFL-prefixed formats.

Expected targets are written out by hand from the formats' documented names (NEO_FLUX.md B3), not
derived from lib_merge.lora.flux_keys.
"""
from __future__ import annotations

import pytest

from lib_merge.arch.flux import FluxArchitecture
from lib_merge.arch.flux_layouts import FLUX_REAL, checkpoint
from lib_merge.lora.flux_keys import block_of, diffusers_table, module_of, resolve

H = 3072
CASES = [
    # kohya / sd-scripts
    ("lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight", "double_blocks.0.img_attn.qkv", None, "D00"),
    ("lora_unet_double_blocks_18_txt_mlp_2.alpha", "double_blocks.18.txt_mlp.2", None, "D18"),
    ("lora_unet_single_blocks_37_linear1.lora_up.weight", "single_blocks.37.linear1", None, "S37"),
    ("lora_unet_single_blocks_5_modulation_lin.lora_up.weight", "single_blocks.5.modulation.lin", None, "S05"),
    ("lora_unet_final_layer_adaLN_modulation_1.lora_up.weight", "final_layer.adaLN_modulation.1", None, "OUT"),
    ("lora_unet_time_in_in_layer.lora_down.weight", "time_in.in_layer", None, "IN"),
    # diffusers / PEFT (ai-toolkit, SimpleTuner)
    ("transformer.transformer_blocks.3.attn.to_k.lora_A.weight", "double_blocks.3.img_attn.qkv", (H, 2 * H), "D03"),
    ("transformer.transformer_blocks.3.attn.add_v_proj.lora_B.weight", "double_blocks.3.txt_attn.qkv",
     (2 * H, 3 * H), "D03"),
    ("transformer.transformer_blocks.7.ff_context.net.0.proj.lora_A.weight", "double_blocks.7.txt_mlp.0", None, "D07"),
    ("transformer.transformer_blocks.7.norm1.linear.lora_A.weight", "double_blocks.7.img_mod.lin", None, "D07"),
    ("transformer.transformer_blocks.7.attn.to_add_out.lora_A.weight", "double_blocks.7.txt_attn.proj", None, "D07"),
    ("transformer.single_transformer_blocks.20.attn.to_q.lora_A.weight", "single_blocks.20.linear1", (0, H), "S20"),
    ("transformer.single_transformer_blocks.20.proj_mlp.lora_B.weight", "single_blocks.20.linear1",
     (3 * H, 7 * H), "S20"),
    ("transformer.single_transformer_blocks.20.proj_out.lora_B.weight", "single_blocks.20.linear2", None, "S20"),
    ("transformer.x_embedder.lora_A.weight", "img_in", None, "IN"),
    ("transformer.time_text_embed.guidance_embedder.linear_2.lora_A.weight", "guidance_in.out_layer", None, "IN"),
    ("transformer.proj_out.lora_A.weight", "final_layer.linear", None, "OUT"),
    # OneTrainer
    ("lora_transformer_single_transformer_blocks_2_attn_to_v.lora_down.weight", "single_blocks.2.linear1",
     (2 * H, 3 * H), "S02"),
    ("lora_transformer_transformer_blocks_11_ff_net_2.alpha", "double_blocks.11.img_mlp.2", None, "D11"),
    # BFL names saved with a prefix
    ("diffusion_model.double_blocks.4.img_mod.lin.lora_A.weight", "double_blocks.4.img_mod.lin", None, "D04"),
]


@pytest.mark.parametrize("lora_key,key,rows,block", CASES)
def test_each_format_resolves_to_the_model_key_and_block(lora_key, key, rows, block):
    mod = module_of(lora_key)
    t = resolve(mod)
    assert t is not None and t.key == key
    r = t.rows(H)
    assert (None if r is None else (r.start, r.stop)) == rows
    assert block_of(mod) == block


def test_text_encoders_and_unknowns():
    assert block_of("lora_te1_text_model_encoder_layers_0_mlp_fc1") == "CLIP"
    assert block_of("lora_te2_encoder_block_0_layer_0_SelfAttention_q") == "T5"
    assert resolve("lora_unet_double_blocks_0_img_attn_nonsense") is None
    assert resolve("lora_unet_down_blocks_0_attentions_0_proj_in") is None  # an SD name


def test_every_diffusers_name_lands_on_a_real_key_and_slices_tile_the_fused_tensors():
    real = checkpoint(FLUX_REAL, "dev")
    covered: dict[str, set] = {}
    for name, t in diffusers_table().items():
        assert t.key + ".weight" in real, name
        r = t.rows(H)
        if r is not None:
            covered.setdefault(t.key, set()).update(range(r.start, r.stop))
    assert len(covered) == 2 * 19 + 38
    for key, rows in covered.items():
        assert rows == set(range(real[key + ".weight"][0])), key  # q, k, v (and the MLP) fill every row


def test_block_counts_follow_the_model():
    small = FluxArchitecture("flux-2x3", "Flux", 2, 3)
    assert block_of("lora_unet_double_blocks_1_img_attn_qkv", small) == "D01"
    assert resolve("lora_unet_double_blocks_2_img_attn_qkv", small) is None  # no such block in this model
