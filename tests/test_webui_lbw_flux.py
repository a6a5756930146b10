"""LoRA block weights on Flux in lllyasviel Forge: the applier scales each patch by the block of its
model key (61 slots) on clones, never touching what Forge's LoRA code made and caches.

The patch dict is built here as Forge builds it (lllyasviel/stable-diffusion-webui-forge dfdcbab6):
- backend/patcher/base.py ModelPatcher.add_patches: `lora_patches[(filename, strength_patch,
  strength_model, online_mode)] = {parameter key: [[strength_patch, value, strength_model, offset,
  function], ...]}`, a tuple key `(key, offset[, function])` giving its offset (several entries per key);
- packages_3rdparty/comfyui_lora_collection/lora.py model_lora_keys_unet: UNet parameter keys are
  `diffusion_model.<BFL key>.weight`; diffusers Flux LoRAs map (flux_to_diffusers) to
  `(diffusion_model.double_blocks.N.img_attn.qkv.weight, (0, offset, size))` row slices;
  model_lora_keys_clip: `clip_l.transformer.text_model.encoder.layers.N.*.weight` and
  `t5xxl.transformer.*.weight` (lora_te1_ / lora_te2_ / lora_te3_);
- backend/diffusion_engine/flux.py: class `Flux` whose `forge_objects.clip` holds clip_l and t5xxl.
Expected ratios are the tag's 61 values looked up by a slot table written here.
"""
from __future__ import annotations

import copy
import sys
import types

import pytest
import torch

from lib_merge.arch.flux import FLUX1
from lib_merge.lora.presets import DEFAULT_BOOK
from lib_merge.lora.tag import parse_tag
from lib_merge.webui import lbw_tags
from lib_merge.webui.checkpoints import lbw_arch_of_model
from lib_merge.webui.lbw_forge import ForgeApplier
from lib_merge.webui.lbw_runtime import Job, te_state
from lib_merge.webui.lbw_tags import Use

SLOTS = ("CLIP", "T5", "IN", *(f"D{i:02d}" for i in range(19)), *(f"S{i:02d}" for i in range(38)), "OUT")
VALUES = [round((i + 1) / 100, 2) for i in range(61)]  # slot i carries (i + 1) / 100
WANT = dict(zip(SLOTS, VALUES))
H = 3072
FILE = "/models/Lora/flux_style.safetensors"
QKV7 = "diffusion_model.double_blocks.7.img_attn.qkv.weight"
UNET_KEYS = {
    (QKV7, (0, 0, H)): "D07", (QKV7, (0, H, H)): "D07", (QKV7, (0, 2 * H, H)): "D07",  # diffusers to_q/k/v
    "diffusion_model.double_blocks.0.txt_mod.lin.weight": "D00",
    "diffusion_model.single_blocks.20.linear1.weight": "S20",
    "diffusion_model.single_blocks.37.linear2.weight": "S37",
    "diffusion_model.img_in.weight": "IN",
    "diffusion_model.guidance_in.in_layer.weight": "IN",
    "diffusion_model.final_layer.linear.weight": "OUT",
}
CLIP_KEYS = {
    "clip_l.transformer.text_model.encoder.layers.3.self_attn.q_proj.weight": "CLIP",
    "t5xxl.transformer.encoder.block.2.layer.0.SelfAttention.q.weight": "T5",
}


class Patcher:
    """The parts of Forge's ModelPatcher the applier uses; add_patches as in base.py."""

    def __init__(self):
        self.lora_patches: dict = {}

    def clone(self):
        n = Patcher()
        n.lora_patches = self.lora_patches.copy()  # shallow, as Forge's clone
        return n

    def add_patches(self, *, filename, patches, strength_patch=1.0, strength_model=1.0, online_mode=False):
        this = {}
        for k in patches:
            key, offset, function = (k, None, None) if isinstance(k, str) else (k[0], k[1], k[2] if len(k) > 2 else None)
            this.setdefault(key, []).append([strength_patch, patches[k], strength_model, offset, function])
        self.lora_patches[(filename, strength_patch, strength_model, online_mode)] = this

    def refresh_loras(self):
        pass


class Clip:
    def __init__(self, patcher):
        self.patcher = patcher

    def clone(self):
        return Clip(self.patcher)


def _patches(keys):
    return {k: ("lora", (torch.ones(1), torch.ones(1), 1.0, None, None)) for k in keys}


@pytest.fixture
def forge(monkeypatch):
    nets = types.SimpleNamespace(loaded_networks=[types.SimpleNamespace(
        name="flux_style", network_on_disk=types.SimpleNamespace(filename=FILE))], available_network_aliases={})
    monkeypatch.setitem(sys.modules, "networks", nets)
    unet, clip = Patcher(), Patcher()
    unet.add_patches(filename=FILE, patches=_patches(UNET_KEYS), strength_patch=0.8)
    clip.add_patches(filename=FILE, patches=_patches(CLIP_KEYS), strength_patch=0.8)
    objects = types.SimpleNamespace(unet=unet, clip=Clip(clip))
    p = types.SimpleNamespace(sd_model=types.SimpleNamespace(forge_objects=objects))
    return p, unet, clip


def _job(lbw: str) -> Job:
    text = f"<lora:flux_style:0.8:lbw={lbw}>"
    job = Job(0, True, arch=FLUX1, presets=DEFAULT_BOOK)
    job.uses = [Use("flux_style", parse_tag(text, DEFAULT_BOOK), text)]
    job.phase = (True,)
    return job


def _strengths(patcher) -> dict:
    ((_, inner),) = patcher.lora_patches.items()
    return {k: [(e[0], e[3]) for e in v] for k, v in inner.items()}


def test_flux_patches_are_scaled_by_the_block_of_their_model_key(forge):
    p, unet, clip = forge
    before = copy.deepcopy((_strengths(unet), _strengths(clip)))
    inner_before = (next(iter(unet.lora_patches.values())), next(iter(clip.lora_patches.values())))
    job = _job(",".join(map(str, VALUES)))
    ForgeApplier().before_sampling(p, job)
    new_unet, new_clip = p.sd_model.forge_objects.unet, p.sd_model.forge_objects.clip.patcher
    assert new_unet is not unet and new_clip is not clip
    got = _strengths(new_unet)
    for k, block in UNET_KEYS.items():
        key = k if isinstance(k, str) else k[0]
        entries = got[key]
        assert all(s == pytest.approx(0.8 * WANT[block]) for s, _ in entries), (key, entries)
    assert [off for _, off in got[QKV7]] == [(0, 0, H), (0, H, H), (0, 2 * H, H)]  # each slice keeps its rows
    got = _strengths(new_clip)
    for key, block in CLIP_KEYS.items():
        assert got[key] == [(pytest.approx(0.8 * WANT[block]), None)], key
    # Forge's own dicts, lists and strengths are untouched (they are cached in forge_objects_after_applying_lora)
    assert (_strengths(unet), _strengths(clip)) == before
    assert next(iter(unet.lora_patches.values())) is inner_before[0]
    assert next(iter(clip.lora_patches.values())) is inner_before[1]
    # the patch values themselves are shared, not copied
    ((_, ours),) = new_unet.lora_patches.items()
    assert ours[QKV7][0][1] is inner_before[0][QKV7][0][1]
    assert te_state(job) is not None  # CLIP/T5 weights differ from the plain LoRA: cached conds must go


def test_fluxall_leaves_forge_s_patchers_as_they_are(forge):
    p, unet, clip = forge
    job = _job("FLUXALL")
    ForgeApplier().before_sampling(p, job)
    assert p.sd_model.forge_objects.unet is unet and p.sd_model.forge_objects.clip.patcher is clip
    assert te_state(job) is None


def test_flux_ratios_by_name_and_list_lengths():
    job = _job("FLUXALL")
    ratios, _ = lbw_tags.ratios_by_name(job.uses[0].tag, [QKV7, "diffusion_model.img_in.weight"], job)
    assert ratios == {QKV7: 1.0, "diffusion_model.img_in.weight": 1.0}
    with pytest.raises(Exception, match="26"):
        lbw_tags.validate(["<lora:x:1:lbw=" + ",".join(["1"] * 26) + ">"], FLUX1, DEFAULT_BOOK)
    assert lbw_tags.validate(["<lora:x:1:lbw=" + ",".join(["0.5"] * 61) + ">"], FLUX1, DEFAULT_BOOK)


class Flux:  # named as Forge's engine class (no is_flux attribute in lllyasviel Forge)
    def __init__(self, names):
        sd = {n[len("diffusion_model."):]: None for n in names}
        net = types.SimpleNamespace(state_dict=lambda: sd)
        self.forge_objects = types.SimpleNamespace(unet=types.SimpleNamespace(model=types.SimpleNamespace(
            diffusion_model=net)))


class Chroma(Flux):
    pass


def test_the_live_flux_model_gives_the_flux_architecture_with_its_counts():
    real = [f"diffusion_model.double_blocks.{i}.img_attn.qkv.weight" for i in range(19)] + \
           [f"diffusion_model.single_blocks.{i}.linear1.weight" for i in range(38)] + \
           ["diffusion_model.guidance_in.in_layer.weight", "diffusion_model.vector_in.in_layer.weight"]
    assert lbw_arch_of_model(Flux(real)).blocks == tuple(SLOTS)
    small = [f"diffusion_model.double_blocks.{i}.img_attn.qkv.weight" for i in range(2)] + \
            [f"diffusion_model.single_blocks.{i}.linear1.weight" for i in range(3)]
    assert len(lbw_arch_of_model(Flux(small)).blocks) == 3 + 2 + 3 + 1
    chroma = [k for k in real if "guidance_in" not in k and "vector_in" not in k] + \
        ["diffusion_model.distilled_guidance_layer.in_proj.weight"]
    assert lbw_arch_of_model(Chroma(chroma)).id == "chroma"
    assert lbw_arch_of_model(Flux([])) is None  # no transformer keys: no block table to use
