"""LoRA names -> format, architecture, checkpoint key, block; and per-module strengths for the webui."""
from __future__ import annotations

import pytest

from lib_merge.arch.blocks import SD1, SD2, SDXL
from lib_merge.lora.keys import (KeyIndex, Module, canonical, compvis_to_diffusers, diffusers_to_compvis, guess_arch,
                                 kohya_name, layout_index, module_block)
from lib_merge.lora.strengths import active, module_strengths
from lib_merge.lora.tag import parse_tag
from lib_merge.arch import layouts
from tests import synth

P = "model.diffusion_model."

# Hand-checked against REFERENCE §7's table: (kohya SD1 name, checkpoint key, block)
SD1_PAIRS = [
    ("down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", "input_blocks.1.1.transformer_blocks.0.attn1.to_q", "IN01"),
    ("down_blocks_1_attentions_1_proj_in", "input_blocks.5.1.proj_in", "IN05"),
    ("down_blocks_2_resnets_1_conv2", "input_blocks.8.0.out_layers.3", "IN08"),
    ("down_blocks_0_downsamplers_0_conv", "input_blocks.3.0.op", "IN03"),
    ("down_blocks_3_resnets_0_time_emb_proj", "input_blocks.10.0.emb_layers.1", "IN10"),
    ("mid_block_attentions_0_transformer_blocks_0_ff_net_2", "middle_block.1.transformer_blocks.0.ff.net.2", "M00"),
    ("mid_block_resnets_1_conv1", "middle_block.2.in_layers.2", "M00"),
    ("up_blocks_0_resnets_2_conv_shortcut", "output_blocks.2.0.skip_connection", "OUT02"),
    ("up_blocks_0_upsamplers_0_conv", "output_blocks.2.1.conv", "OUT02"),
    ("up_blocks_1_upsamplers_0_conv", "output_blocks.5.2.conv", "OUT05"),
    ("up_blocks_1_attentions_0_transformer_blocks_0_attn2_to_out_0", "output_blocks.3.1.transformer_blocks.0.attn2.to_out.0", "OUT03"),
    ("up_blocks_3_attentions_2_proj_out", "output_blocks.11.1.proj_out", "OUT11"),
    ("conv_in", "input_blocks.0.0", "IN00"),
    ("conv_out", "out.2", "OUT11"),
    ("time_embedding_linear_1", "time_embed.0", "IN00"),
]


@pytest.mark.parametrize("name,key,block", SD1_PAIRS)
def test_sd1_kohya_names(name, key, block):
    m = canonical("lora_unet_" + name, xl=False)
    t = KeyIndex(SD1, layouts.checkpoint("sd1", layouts.TINY)).target(m)
    assert t.key == P + key + ".weight" and t.block == block and t.part is None
    assert kohya_name(m, SD1) == "lora_unet_" + name  # written back the same way


SDXL_PAIRS = [
    ("input_blocks_4_1_transformer_blocks_1_attn2_to_k", "input_blocks.4.1.transformer_blocks.1.attn2.to_k", "IN04"),
    ("input_blocks_8_1_transformer_blocks_9_ff_net_0_proj", "input_blocks.8.1.transformer_blocks.9.ff.net.0.proj", "IN08"),
    ("middle_block_1_proj_out", "middle_block.1.proj_out", "M00"),
    ("output_blocks_1_1_transformer_blocks_0_attn1_to_q", "output_blocks.1.1.transformer_blocks.0.attn1.to_q", "OUT01"),
    ("output_blocks_5_2_conv", "output_blocks.5.2.conv", "OUT05"),
    ("label_emb_0_0", "label_emb.0.0", "IN00"),
    ("out_2", "out.2", "OUT08"),
]


@pytest.mark.parametrize("name,key,block", SDXL_PAIRS)
def test_sdxl_kohya_names(name, key, block):
    m = canonical("lora_unet_" + name, xl=True)
    t = KeyIndex(SDXL, layouts.checkpoint("sdxl", layouts.TINY)).target(m)
    assert (t.key, t.block) == (P + key + ".weight", block)
    assert kohya_name(m, SDXL) == "lora_unet_" + name


def test_sdxl_diffusers_names_convert_too():
    assert diffusers_to_compvis("down_blocks_1_attentions_0_transformer_blocks_1_attn1_to_q", True) == \
        "input_blocks_4_1_transformer_blocks_1_attn1_to_q"
    assert diffusers_to_compvis("up_blocks_0_attentions_2_proj_in", True) == "output_blocks_2_1_proj_in"
    assert diffusers_to_compvis("up_blocks_1_upsamplers_0_conv", True) == "output_blocks_5_2_conv"
    assert diffusers_to_compvis("add_embedding_linear_2", True) == "label_emb_0_2"


@pytest.mark.parametrize("arch", ["sd1", "sd2", "sdxl"])
def test_compvis_diffusers_round_trip_over_every_unet_layer(arch):
    idx = layout_index(arch)
    n = 0
    for m, _ in idx.items():
        if m.component == "unet" and not m.name.startswith("out_"):
            d = compvis_to_diffusers(m.name)
            assert d is not None, m.name
            assert diffusers_to_compvis(d, arch == "sdxl") == m.name
            n += 1
    assert n > 300


def test_text_encoders():
    sd1 = KeyIndex(SD1, layouts.checkpoint("sd1", layouts.TINY))
    t = sd1.target(canonical("lora_te_text_model_encoder_layers_3_mlp_fc1", False))
    assert t.key == "cond_stage_model.transformer.text_model.encoder.layers.3.mlp.fc1.weight" and t.block == "BASE"
    xl = KeyIndex(SDXL, layouts.checkpoint("sdxl", layouts.TINY))
    t = xl.target(canonical("lora_te1_text_model_encoder_layers_0_self_attn_k_proj", True))
    assert t.key == "conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.k_proj.weight"
    for i, q in enumerate("qkv"):
        t = xl.target(canonical(f"lora_te2_text_model_encoder_layers_31_self_attn_{q}_proj", True))
        assert t.key == "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight"
        assert t.part == i and t.bias.endswith("attn.in_proj_bias") and xl.shape(t) == (16, 16)
    for lora, ck in (("self_attn_out_proj", "attn.out_proj"), ("mlp_fc1", "mlp.c_fc"), ("mlp_fc2", "mlp.c_proj")):
        t = xl.target(canonical(f"lora_te2_text_model_encoder_layers_2_{lora}", True))
        assert t.key == f"conditioner.embedders.1.model.transformer.resblocks.2.{ck}.weight" and t.part is None
    sd2 = KeyIndex(SD2, layouts.checkpoint("sd2", layouts.TINY))
    t = sd2.target(canonical("lora_te_text_model_encoder_layers_20_self_attn_v_proj", False))
    assert t.key == "cond_stage_model.model.transformer.resblocks.20.attn.in_proj_weight" and t.part == 2


def test_peft_and_old_diffusers_names():
    assert canonical("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", False) == \
        Module("unet", "input_blocks_4_1_transformer_blocks_0_attn2_to_k")
    assert canonical("base_model.model.unet.mid_block.attentions.0.proj_in", False) == \
        Module("unet", "middle_block_1_proj_in")
    assert canonical("unet.up_blocks.1.attentions.2.transformer_blocks.0.attn1.processor.to_out_lora", False) == \
        Module("unet", "output_blocks_5_1_transformer_blocks_0_attn1_to_out_0")
    assert canonical("text_encoder_2.text_model.encoder.layers.1.mlp.fc2", True) == \
        Module("te2", "text_model_encoder_layers_1_mlp_fc2")
    assert canonical("text_encoder.text_model.encoder.layers.1.mlp.fc2", True).component == "te1"


@pytest.mark.parametrize("arch,algo,naming,conv,want", [
    ("sd1", "lora", "kohya", False, SD1), ("sd1", "loha", "peft", False, SD1), ("sdxl", "lora", "kohya", False, SDXL),
    ("sdxl", "lokr", "kohya", True, SDXL), ("sd2", "lora", "kohya", False, SD2), ("sdxl", "lora", "peft", False, SDXL),
])
def test_guess_arch(arch, algo, naming, conv, want):
    sd, targets = synth.make_lora(arch, algo, naming=naming, conv=conv)
    g = guess_arch(t.name for t in targets)
    assert g is not None and g.arch is want


def test_guess_arch_unet_only_and_from_width():
    sd, targets = synth.make_lora("sdxl", te=False, unet_style="diffusers")
    assert guess_arch(t.name for t in targets).arch is SDXL
    assert guess_arch(["lora_unet_mid_block_attentions_0_proj_in"]) is None
    g = guess_arch(["lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k"],
                   {"lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (8, 1024)})
    assert g.arch is SD2


def test_every_synthetic_module_has_a_target_and_block():
    for arch, a in (("sd1", SD1), ("sdxl", SDXL), ("sd2", SD2)):
        idx = KeyIndex(a, layouts.checkpoint(arch, layouts.TINY))
        for t in synth.lora_targets(arch, conv=True):
            m = canonical(t.name, a is SDXL)
            tgt = idx.target(m)
            assert (tgt.key, tgt.part) == (t.key, t.part), t.name
            assert module_block(m, a) == a.block_of(t.key)


# ---- strengths for the webui -----------------------------------------------------------------------

def test_strengths_accept_every_naming():
    tag = parse_tag("<lora:x:0.5:2:lbw=1,1,1,1,1,1,1,0.8,1,1,1,1>")
    names = {
        "lora_unet_output_blocks_1_1_transformer_blocks_0_attn1_to_q": ("OUT01", 1.6),
        "diffusion_model.output_blocks.1.1.transformer_blocks.0.attn1.to_q.weight": ("OUT01", 1.6),  # Forge
        "diffusion_model_output_blocks_0_1_proj_in": ("OUT00", 2.0),  # A1111 layer name
        "lora_unet_output_blocks_1_1_proj_out.lora_down.weight": ("OUT01", 1.6),  # a file key
        "lora_te2_text_model_encoder_layers_0_mlp_fc1": ("BASE", 0.5),
        "1_model_transformer_resblocks_0_attn_in_proj": ("BASE", 0.5),  # A1111 SDXL OpenCLIP
        "0_transformer_text_model_encoder_layers_0_mlp_fc1": ("BASE", 0.5),
        "clip_l.transformer.text_model.encoder.layers.0.mlp.fc1.weight": ("BASE", 0.5),
    }
    s = module_strengths(tag, names)
    assert s.ratios.arch is SDXL and s.unmatched == ()
    for n, (block, strength) in names.items():
        assert (s.modules[n].block, s[n]) == (block, strength), n


def test_strengths_sd1_diffusers_and_unknown():
    tag = parse_tag("<lora:x:1:1:lbw=OUTS>")
    s = module_strengths(tag, ["lora_unet_up_blocks_3_attentions_2_proj_out", "lora_unet_down_blocks_0_attentions_0_proj_in",
                               "lora_te_text_model_encoder_layers_0_mlp_fc1", "something_else"], arch="sd1")
    assert [m.strength for m in s.modules.values()] == [1.0, 0.0, 1.0, 1.0]
    assert s.unmatched == ("something_else",)
    none = module_strengths(parse_tag("<lora:x:1:1:lbw=NONE>"), ["something_else", "lora_unet_time_embedding_linear_1"],
                            arch="sd1")
    assert none["something_else"] == 0 and none["lora_unet_time_embedding_linear_1"] == 0  # NONE is really off


def test_active_steps_counted_from_one():
    t = parse_tag("<lora:x:1:start=2:stop=4>")
    assert [active(t, s) for s in range(1, 7)] == [False, False, True, True, False, False]
    assert all(active(parse_tag("<lora:x:1>"), s) for s in range(1, 5))
