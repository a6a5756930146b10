"""The merge tab's webui side: checkpoint list, in-place load of a merged state dict, restore, generate."""
from __future__ import annotations

import pytest
import torch

from lib_merge.merge.engine import merge
from lib_merge.errors import ArchitectureError, ModelFileError
from lib_merge.merge.recipe import Recipe
from lib_merge.ui.host import GenSettings
from tests.webui_double.fixtures import a1111_fixture, forge_fixture, neo_fixture, webui_fixture  # noqa: F401  (fixtures)


def two_models(w, arch="sd1"):
    a = w.add_checkpoint("A.safetensors", arch, seed=1)
    b = w.add_checkpoint("B.safetensors", arch, seed=2)
    w.load("A.safetensors")
    return a, b


def merged_dict(w, alpha=0.5, **kw):
    paths = [w.sd_models.get_closet_checkpoint_match(n).filename for n in ("A.safetensors", "B.safetensors")]
    return merge(Recipe(models=tuple(paths), alpha=alpha, **kw), None).state_dict


def live_weights(w) -> dict[str, torch.Tensor]:
    """The running model's weights under checkpoint names (the double keeps Forge's own names)."""
    m = w.shared.sd_model
    if w.flavor == "a1111":
        w.sd_hijack = __import__("modules.sd_hijack", fromlist=["x"])
        w.sd_hijack.model_hijack.undo_hijack(m)
        try:
            return {k: v.detach().clone() for k, v in m.state_dict().items()}
        finally:
            w.sd_hijack.model_hijack.hijack(m)
    out = {"model." + k: v for k, v in m.forge_objects.unet.model.state_dict().items()}
    out.update({"cond_stage_model." + k[len("clip_l."):]: v for k, v in m.forge_objects.clip.cond_stage_model.state_dict().items()})
    out.update({"first_stage_model." + k: v for k, v in m.forge_objects.vae.model.state_dict().items()})
    return out


def host():
    from lib_merge.webui.host import WebuiHost
    return WebuiHost()


# ---- checkpoint list -----------------------------------------------------------------------------------
def test_checkpoints_resolve_names_and_titles(webui):
    two_models(webui)
    h = host()
    assert h.name == webui.flavor
    assert h.checkpoints() == ["A.safetensors", "B.safetensors"]
    assert h.checkpoint_path("B.safetensors").endswith("B.safetensors")
    assert h.checkpoint_path("B") == h.checkpoint_path("B.safetensors")  # name_for_extra / title match
    assert h.output_dir() == webui.sd_models.model_path
    with pytest.raises(ModelFileError, match="not in the webui's list"):
        h.checkpoint_path("nope")
    webui.add_checkpoint("C.safetensors", seed=3)
    h.refresh()
    assert "C.safetensors" in h.checkpoints()


# ---- the in-place load ---------------------------------------------------------------------------------
def test_merged_weights_reach_the_model_and_the_vae_stays(webui):
    a, b = two_models(webui)
    sd = merged_dict(webui)
    lock = __import__("modules.call_queue", fromlist=["x"]).queue_lock
    taken = lock.acquired
    status = host().load_state_dict(dict(sd), "A.safetensors", "A_B_mix")
    # Neo: the merge goes through Neo's own loader from memory (lib_merge/webui/neo.py); elsewhere in place
    assert ("from memory" if webui.flavor == "neo" else "in place") in status and lock.acquired == taken + 1
    live = live_weights(webui)
    checked = {"model": 0, "cond_stage_model": 0, "first_stage_model": 0}
    for k, v in sd.items():
        if k.startswith(("model.diffusion_model.", "cond_stage_model.")) and k in live:
            assert torch.equal(live[k], v.to(live[k].dtype)), k
            checked[k.split(".")[0]] += 1
        elif k.startswith("first_stage_model.") and k in live:
            assert torch.equal(live[k], a[k].to(live[k].dtype)), k  # the VAE is not replaced
            checked["first_stage_model"] += 1
    assert checked["model"] == 686 and checked["cond_stage_model"] >= 196 and checked["first_stage_model"] == 248
    assert any(not torch.equal(sd[k], a[k]) for k in sd if k.startswith("model.diffusion_model."))
    assert webui.shared.opts.data["sd_model_checkpoint"] == "A.safetensors"  # the selection is untouched


def test_a1111_in_place_keeps_the_hijack_and_resets_lora_backups(a1111):
    two_models(a1111)
    a1111.add_lora("style", "sd1", seed=5)
    cls_cache = a1111.processing.StableDiffusionProcessing.cached_c
    a1111.txt2img("a cat <lora:style:1>", steps=2)
    assert cls_cache[0] is not None
    sd = merged_dict(a1111)
    hijack = __import__("modules.sd_hijack", fromlist=["x"])
    calls = len(hijack.model_hijack.calls)
    host().load_state_dict(sd, "A.safetensors", "mix")
    m = a1111.shared.sd_model
    assert hijack.model_hijack.calls[calls:] == ["undo_hijack", "hijack"]
    assert isinstance(m.cond_stage_model, hijack.EmbedderWrapper)
    layer = m.network_layer_mapping["diffusion_model_input_blocks_1_1_proj_in"]
    assert layer.network_weights_backup is None and layer.network_current_names == ()
    assert cls_cache[0] is None  # the shared cond cache was emptied in place
    # the next LoRA generation merges the LoRA onto the merged weights, not the old ones
    p, _ = a1111.txt2img("a cat", steps=1)
    q, _ = a1111.txt2img("a cat <lora:style:1>", steps=1)
    base = p.unet_snapshots[-1][2]["diffusion_model_input_blocks_1_1_proj_in"]
    assert torch.equal(base, sd["model.diffusion_model.input_blocks.1.1.proj_in.weight"].to(base.dtype))
    assert not torch.equal(q.unet_snapshots[-1][2]["diffusion_model_input_blocks_1_1_proj_in"], base)
    assert not any("no backup weights" in e for e in a1111.errors.reported)


def test_a1111_fp8_goes_through_load_model_without_touching_the_config(a1111):
    two_models(a1111)
    a1111.shared.opts.data["sd_checkpoint_cache"] = 1
    __import__("modules.devices", fromlist=["x"]).fp8 = True
    try:
        sd = merged_dict(a1111)
        n = len(sd)
        status = host().load_state_dict(sd, "A.safetensors", "mix")
    finally:
        __import__("modules.devices", fromlist=["x"]).fp8 = False
    assert "fp8" in status and len(sd) == n  # load_model got a copy to pop from
    assert ("load_model", "A.safetensors", True, True) in a1111.sd_models.calls  # a dict, SkipWritingToConfig on
    assert not a1111.sd_models.checkpoints_loaded  # the merge is never cached under A's name
    assert a1111.shared.opts.data["sd_model_checkpoint"] == "A.safetensors"
    live = live_weights(a1111)
    k = "model.diffusion_model.out.2.weight"
    assert torch.equal(live[k], sd[k])


def test_a1111_another_architecture_is_loaded_whole(a1111):
    a1111.add_checkpoint("XL.safetensors", "sdxl", seed=1)
    a1111.add_checkpoint("XL2.safetensors", "sdxl", seed=2)
    two_models(a1111)
    paths = [a1111.sd_models.get_closet_checkpoint_match(n).filename for n in ("XL.safetensors", "XL2.safetensors")]
    sd = merge(Recipe(models=tuple(paths), alpha=0.3), None).state_dict
    status = host().load_state_dict(sd, "XL.safetensors", "xl_mix")
    assert "not SDXL" in status and a1111.shared.sd_model.is_sdxl


def test_a1111_restore_reloads_the_selected_file(a1111):
    a, _ = two_models(a1111)
    h = host()
    h.load_state_dict(merged_dict(a1111), "A.safetensors", "mix")
    assert "A.safetensors" in h.restore()
    live = live_weights(a1111)
    assert all(torch.equal(live[k], v) for k, v in a.items() if k in live)
    assert ("reload_model_weights", "A.safetensors", True) in a1111.sd_models.calls


def test_forge_resets_lora_backups_first_and_asks_for_a_global_unload(forge):
    two_models(forge)
    forge.add_lora("style", "sd1", seed=5)
    forge.txt2img("a cat <lora:style:1>", steps=1)
    m = forge.shared.sd_model
    assert m.forge_objects_original.unet.lora_loader.backup  # LoRA merged: originals are backed up
    sd = merged_dict(forge)
    forge.processing.need_global_unload = False
    host().load_state_dict(sd, "A.safetensors", "mix")
    assert forge.processing.need_global_unload is True
    assert m.forge_objects_original.unet.lora_loader.backup == {}
    assert m.forge_objects_original.clip.patcher.lora_loader.backup == {}
    p, _ = forge.txt2img("a cat", steps=1)
    q, _ = forge.txt2img("a cat <lora:style:1>", steps=1)
    key = "diffusion_model.input_blocks.1.1.proj_in.weight"
    assert torch.equal(p.unet_snapshots[-1][2][key], sd["model." + key].to(torch.float32))
    assert not torch.equal(q.unet_snapshots[-1][2][key], p.unet_snapshots[-1][2][key])
    r, _ = forge.txt2img("a cat", steps=1)  # the merge survives LoRA changes (no stale backup comes back)
    assert torch.equal(r.unet_snapshots[-1][2][key], p.unet_snapshots[-1][2][key])


def test_forge_refuses_quantized_storage_and_other_architectures(forge):
    two_models(forge)
    m = forge.shared.sd_model
    m.forge_objects.unet.model.storage_dtype = "nf4"
    before = {k: v.clone() for k, v in m.forge_objects.unet.model.state_dict().items()}
    with pytest.raises(ArchitectureError, match="quantized"):
        host().load_state_dict(merged_dict(forge), "A.safetensors", "mix")
    assert all(torch.equal(v, m.forge_objects.unet.model.state_dict()[k]) for k, v in before.items())
    m.forge_objects.unet.model.storage_dtype = torch.float16
    forge.add_checkpoint("XL.safetensors", "sdxl", seed=1)
    xl = forge.sd_models.get_closet_checkpoint_match("XL.safetensors").filename
    with pytest.raises(ArchitectureError, match="is SDXL but the loaded model"):
        host().load_state_dict(merge(Recipe(models=(xl, xl), alpha=0.5), None).state_dict, "XL.safetensors", "x")


def test_forge_loads_a_model_when_none_is_loaded_yet(forge):
    forge.add_checkpoint("A.safetensors", seed=1)
    forge.add_checkpoint("B.safetensors", seed=2)
    forge.shared.opts.data["sd_model_checkpoint"] = "A.safetensors"
    assert not hasattr(forge.shared.sd_model, "forge_objects")  # FakeInitialModel
    host().load_state_dict(merged_dict(forge), "A.safetensors", "mix")
    assert hasattr(forge.shared.sd_model, "forge_objects")


def test_forge_restore_reloads_from_file_at_the_next_generation(forge):
    a, _ = two_models(forge)
    h = host()
    h.load_state_dict(merged_dict(forge), "A.safetensors", "mix")
    assert "reloaded from its file" in h.restore()
    assert forge.sd_models.model_data.forge_hash == ""
    forge.txt2img("a cat", steps=1)
    live = live_weights(forge)
    assert torch.equal(live["model.diffusion_model.out.2.weight"], a["model.diffusion_model.out.2.weight"])


def test_forge_merge_loaded_right_after_restore_survives_the_next_generation(forge):
    """Real Forge dfdcbab6, modules/processing.py manage_model_and_prompt_cache -> sd_models.forge_model_reload:
    the engine is reloaded from its file whenever forge_hash != str(forge_loading_parameters). Restore clears
    the hash; a Merge and load before any generation must still be what the next generation renders
    (found in a real Forge: the image after Merge and load was model A's)."""
    a, b = two_models(forge)
    h = host()
    h.load_state_dict(merged_dict(forge), "A.safetensors", "mix")
    h.restore()
    sd = merged_dict(forge, alpha=0.25)
    h.load_state_dict(sd, "A.safetensors", "mix2")
    forge.txt2img("a cat", steps=1)
    key = "model.diffusion_model.out.2.weight"
    live = live_weights(forge)[key]
    want = (0.75 * a[key].double() + 0.25 * b[key].double()).to(live.dtype)
    assert torch.allclose(live, want, atol=1e-3) and not torch.equal(live, a[key].to(live.dtype))


def test_forge_merge_goes_into_the_checkpoint_the_user_picked_since(forge):
    """After the user picks another checkpoint in the top bar (refresh_model_loading_parameters, no
    generation yet), the merge is loaded into that checkpoint's engine, not into the stale one the
    next generation would throw away."""
    a, b = two_models(forge)
    forge.shared.opts.data["sd_model_checkpoint"] = forge.sd_models.get_closet_checkpoint_match("B.safetensors").title
    __import__("modules_forge.main_entry", fromlist=["x"]).refresh_model_loading_parameters()
    status = host().load_state_dict(merged_dict(forge, alpha=0.5), "A.safetensors", "mix")
    assert "B.safetensors" in status  # "labelled B", "Restore brings back B"
    forge.txt2img("a cat", steps=1)
    key = "model.diffusion_model.out.2.weight"
    live = live_weights(forge)[key]
    want = (0.5 * a[key].double() + 0.5 * b[key].double()).to(live.dtype)
    assert torch.allclose(live, want, atol=1e-3)


def test_sdxl_text_encoders_load_in_place(webui):
    webui.add_checkpoint("A.safetensors", "sdxl", seed=1)
    webui.add_checkpoint("B.safetensors", "sdxl", seed=2)
    webui.load("A.safetensors")
    sd = merged_dict(webui)
    host().load_state_dict(sd, "A.safetensors", "xl")
    m = webui.shared.sd_model
    if webui.flavor == "a1111":
        webui_hijack = __import__("modules.sd_hijack", fromlist=["x"]).model_hijack
        webui_hijack.undo_hijack(m)
        live = m.state_dict()
        webui_hijack.hijack(m)
        key = "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"
        assert torch.equal(live[key], sd[key])
    else:
        q = m.forge_objects.clip.cond_stage_model.state_dict()["clip_g.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight"]
        src = sd["conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"]
        assert torch.equal(q, src.chunk(3, 0)[0].to(q.dtype))


# ---- generate -------------------------------------------------------------------------------------------
def test_generate_uses_the_webui_pipeline_with_block_weights(webui):
    two_models(webui)
    webui.add_lora("style", "sd1", seed=5)
    webui.load_scripts()  # registers the on_cfg_denoiser hook, as at webui start-up
    h = host()
    h.load_state_dict(merged_dict(webui), "A.safetensors", "A_B_mix")
    seen = []
    state = webui.shared.state
    begun = state.begun
    out = h.generate(GenSettings(prompt="a cat <lora:style:1:1:lbw=OUTD>", steps=3, seed=5, width=64, height=64),
                     progress=lambda d, t, what: seen.append((d, t, what)))
    assert out.images == ["image 0.0"]
    assert "BlockMerge: A_B_mix" in out.infotext and "LBW presets: OUTD=" in out.infotext
    assert state.begun == begun + 1 and state.job == ""
    assert seen == [(1, 3, "sampling"), (2, 3, "sampling"), (3, 3, "sampling")]


def test_generate_builds_p_for_each_webui(webui):
    two_models(webui)
    from lib_merge.webui.generate import build
    p = build(GenSettings(prompt="x", steps=5, extra={"enable_hr": True, "nonsense": 1}), "lbl")
    assert p.enable_hr and p.steps == 5 and p.extra_generation_params == {"BlockMerge": "lbl"}
    assert p.outpath_samples == "out/txt2img" and p.do_not_save_grid
    if webui.is_forge:
        assert p.hr_additional_modules == ["Use same choices"]
    else:
        assert not hasattr(p, "hr_additional_modules")
    assert [type(s).__name__ for s in p.scripts.alwayson_scripts] == ["LoraBlockWeightScript", "BlockMergeModelIdentity"]
    assert p.script_args == [0, True]


def test_interrupt_stops_a_generation(webui):
    two_models(webui)
    h = host()
    h.interrupt()
    assert webui.shared.state.interrupted


# ---- the identity of a merge in memory (infotext) ------------------------------------------------------
def test_images_from_a_merge_in_memory_name_the_merge_and_carry_its_recipe(webui):
    import hashlib
    import json

    from lib_merge.merge.identity import identity_of, recipe_from_infotext
    from lib_merge.webui.identity_script import BlockMergeModelIdentity
    two_models(webui)
    webui.load_scripts()
    paths = tuple(webui.sd_models.get_closet_checkpoint_match(n).filename for n in ("A.safetensors", "B.safetensors"))
    res = merge(Recipe(models=paths, alpha=0.3), None)
    h = host()
    h.load_state_dict(res.state_dict, "A.safetensors", "A_B_mix", identity=identity_of(res.metadata, "A_B_mix"))

    def render() -> str:
        p = webui.processing.StableDiffusionProcessingTxt2Img(prompt="a cat", steps=2)
        p.scripts, p.script_args = webui.scripts.runner_with(BlockMergeModelIdentity, [])
        return webui.processing.process_images(p).infotexts[0]

    info = render()
    want = hashlib.sha256(res.metadata["sd_merge_recipe"].encode("utf-8")).hexdigest()[:10]
    assert f"Model hash: {want}" in info and "Model: A_B_mix" in info and "Model: A," not in info
    assert recipe_from_infotext(info) == json.loads(res.metadata["sd_merge_recipe"])
    again = merge(Recipe(models=paths, alpha=0.3), None)
    assert identity_of(again.metadata, "other name").hash == want  # same recipe, same inputs: same hash
    assert identity_of(merge(Recipe(models=paths, alpha=0.4), None).metadata, "x").hash != want
    # the tab's Merge and generate goes through the same script
    out = h.generate(GenSettings(prompt="a cat", steps=2, seed=1, width=64, height=64))
    assert f"Model hash: {want}" in out.infotext
    h.restore()
    info = render()
    assert "Model: A" in info and "BlockMerge recipe" not in info and want not in info
