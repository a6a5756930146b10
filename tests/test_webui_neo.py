"""Forge Neo through its double (tests/webui_double/neo, faithful to Neo's source: see each file there).

What each hook relies on in Neo's source (Haoming02/sd-webui-forge-classic, branch neo):
- detection: Neo-only engines in backend/diffusion_engine (wan/qwen/zimage/lumina at 283cb2c4, flux2
  later), modules_forge/forge_version.py `version = "neo"` (283cb2c4, 991be0ed);
- loading: modules/sd_models.py `forge_model_reload` (283cb2c4) -> backend/loader.py `forge_loader(path)`
  -> `split_state_dict` -> `load_torch_file(path, return_metadata=True)` (283cb2c4, bdf09140);
- generating: modules/processing.py imports `forge_model_reload` by name (283cb2c4);
- LoRA: networks.py (283cb2c4, 4e2c21f9, 19cc8799) + base.py `add_patches(filename=...)` lists +
  comfy/lora.py LoRAAdapter values (0cc5e9ea) + LoraLoader (9bb88948);
- X/Y/Z: extensions-builtin/xyz with lib_xyz (ee9b6658).
"""
from __future__ import annotations

import logging
import os
import sys

import pytest
import torch

from lib_merge.errors import MergeError
from lib_merge.merge.engine import merge
from lib_merge.merge.recipe import Recipe
from lib_merge.ui.host import GenSettings
from tests.webui_double.fixtures import delta, neo_fixture, strength  # noqa: F401  (fixtures)
from tests.webui_double.harness import EXT_ROOT, Webui

KEY = "diffusion_model.input_blocks.1.1.proj_in.weight"


def two_models(w, a="A.safetensors", b="B.safetensors"):
    sa = w.add_checkpoint(a, seed=1)
    sb = w.add_checkpoint(b, seed=2)
    w.load(a)
    return sa, sb


def merged(w, a="A.safetensors", b="B.safetensors", alpha=0.5):
    paths = tuple(w.sd_models.get_closet_checkpoint_match(n).filename for n in (a, b))
    return merge(Recipe(models=paths, alpha=alpha), None).state_dict


def host():
    from lib_merge.webui.host import WebuiHost
    return WebuiHost()


def live(w, key=KEY):
    return w.shared.sd_model.forge_objects.unet.model.state_dict()[key]


# ---- detection ---------------------------------------------------------------------------------------
def test_neo_is_told_apart_from_forge_and_a1111(tmp_path):
    for flavor, kind in (("a1111", "a1111"), ("forge", "forge"), ("neo", "neo")):
        with Webui(flavor, tmp_path / flavor):
            from lib_merge.webui import detect
            w = detect.detect()
            assert w.kind.value == kind and w.supported
            assert w.is_forge == (flavor != "a1111") and w.is_neo == (flavor == "neo")
            assert detect.forge_version() == ("neo" if flavor == "neo" else None)
    with Webui("neo", tmp_path / "n2"):
        from lib_merge.webui import detect
        assert detect.detect().label == "Forge Neo"
        assert host().name == "neo"


def _fake(root, *packages, files=()):
    for pkg in packages:
        os.makedirs(root / pkg, exist_ok=True)
    for rel, text in files:
        (root / rel).write_text(text)
    sys.path.insert(0, str(root))


@pytest.mark.parametrize("case", ["classic", "reforge", "version-only", "engines-only"])
def test_forks_by_what_is_importable(tmp_path, case, caplog):
    """Classic (modules_forge + ldm_patched, forge_version "classic", no backend: the mirror's branch classic
    1f95d717) and reForge (ldm_patched) are unsupported; a forge_version of "neo" or a Neo engine alone
    still means Neo, with one warning about the disagreement."""
    from lib_merge.webui import detect
    root = tmp_path / case
    if case == "classic":
        _fake(root, "modules_forge", "ldm_patched", files=[("modules_forge/__init__.py", ""),
                                                          ("ldm_patched/__init__.py", ""),
                                                          ("modules_forge/forge_version.py", 'version = "classic"\n')])
    elif case == "reforge":
        _fake(root, "ldm_patched", files=[("ldm_patched/__init__.py", "")])
    elif case == "version-only":
        _fake(root, "modules_forge", "backend/diffusion_engine",
              files=[("modules_forge/__init__.py", ""), ("modules_forge/forge_version.py", 'version = "neo"\n')])
    else:
        _fake(root, "modules_forge", "backend/diffusion_engine",
              files=[("modules_forge/__init__.py", ""), ("backend/diffusion_engine/flux2.py", "")])
    try:
        detect.detect.cache_clear()
        with caplog.at_level(logging.WARNING, logger="lib_merge"):
            w = detect.detect()
        if case in ("classic", "reforge"):
            assert w.kind is detect.Kind.FORGE_LEGACY and not w.supported and "ldm_patched" in w.label
        else:
            assert w.kind is detect.Kind.NEO and len(caplog.records) == 1
    finally:
        sys.path.remove(str(root))
        for m in [m for m in sys.modules if m.split(".")[0] in ("modules_forge", "ldm_patched", "backend")]:
            del sys.modules[m]
        detect.detect.cache_clear()


def test_an_ldm_patched_forge_gets_one_message_and_nothing_registered(tmp_path, capsys, caplog):
    """Start-up on an unsupported webui: one line naming the problem and the fix; only the tab (which says the
    same) is registered: no Script, no X/Y/Z axis hook, no API route, no settings, no LoRA hooks."""
    root = tmp_path / "legacy"
    with Webui("a1111", tmp_path / "w") as w:
        _fake(root, "modules_forge", "ldm_patched", files=[("modules_forge/__init__.py", ""),
                                                          ("ldm_patched/__init__.py", "")])
        try:
            from lib_merge.webui import detect, startup
            detect.detect.cache_clear()
            startup._told = False
            w.scripts.scripts_data.clear()
            w.script_callbacks.clear_callbacks()
            with caplog.at_level(logging.ERROR, logger="lib_merge"):
                w.load_scripts()
                w.load_scripts()  # "Reload custom script bodies": still one message
            assert [d.script_class.__name__ for d in w.scripts.scripts_data] == []
            used = {k: len(v) for k, v in w.script_callbacks.callback_map.items() if v}
            assert used == {"callbacks_ui_tabs": 1}
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1 and "does not support an ldm_patched Forge" in errors[0] and "Fix:" in errors[0]
            assert capsys.readouterr().out.count("BlockMerge does not support") == 1
            from lib_merge.webui.tab import on_ui_tabs
            with pytest.raises(MergeError, match="cannot drive an ldm_patched Forge"):
                host()
            assert callable(on_ui_tabs)
        finally:
            sys.path.remove(str(root))
            for m in [m for m in sys.modules if m.split(".")[0] in ("modules_forge", "ldm_patched")]:
                del sys.modules[m]
            detect.detect.cache_clear()


# ---- merge and load through Neo's loader, from memory ----------------------------------------------------
def test_the_merge_goes_through_neos_loader_without_a_file(neo):
    a, _ = two_models(neo)
    utils = sys.modules["backend.utils"]
    loader = sys.modules["backend.loader"]
    original = loader.load_torch_file
    sd = merged(neo)
    utils.reads.clear()
    files_before = sorted(os.listdir(neo.models_dir))
    status = host().load_state_dict(dict(sd), "A.safetensors", "A_B_mix")
    assert "from memory" in status and "no file written" in status and "Restore brings back A.safetensors" in status
    assert utils.reads == []  # model A's file was not read: Neo's loader got the merge
    assert loader.load_torch_file is original  # put back
    assert sorted(os.listdir(neo.models_dir)) == files_before  # and no temporary file anywhere near
    m = neo.shared.sd_model
    assert torch.equal(live(neo), sd["model." + KEY].to(live(neo).dtype))
    assert m.sd_checkpoint_info.name == "A.safetensors" and m.blockmerge_label == "A_B_mix"
    assert any(not torch.equal(sd[k], a[k]) for k in sd if k.startswith("model.diffusion_model."))
    # generating keeps it: the loading parameters are the user's, and their hash is the stored one
    n = len(neo.sd_models.calls)
    p, _ = neo.txt2img("a cat", steps=1)
    assert torch.equal(p.unet_snapshots[-1][2][KEY], sd["model." + KEY].to(torch.float32))
    assert not [c for c in neo.sd_models.calls[n:] if c[0] == "forge_model_reload"]
    # restore: model A comes back from its file at the next generation
    assert "reloaded from its file" in host().restore()
    p, _ = neo.txt2img("a cat", steps=1)
    assert utils.reads == [neo.sd_models.get_closet_checkpoint_match("A.safetensors").filename]
    assert torch.equal(p.unet_snapshots[-1][2][KEY], a["model." + KEY].to(torch.float32))
    assert not hasattr(neo.shared.sd_model, "blockmerge_label")


def test_flags_come_from_model_as_path_and_extra_modules_still_load(neo):
    """Neo reads `kontext` from the checkpoint's path and merges the user's extra modules (a VAE file)
    through the same load_torch_file: A's path gives the flag, the VAE file is read from disk."""
    sa, _ = two_models(neo, "A-kontext.safetensors", "B.safetensors")
    from lib_merge.io.safetensors_io import save_tensors
    vae_path = os.path.join(neo.tmp, "vae.safetensors")
    vae = {k[len("first_stage_model."):]: torch.full_like(v, 0.25) for k, v in sa.items() if k.startswith("first_stage_model.")}
    save_tensors(vae_path, vae)
    neo.sd_models.model_data.forge_loading_parameters["additional_modules"] = [vae_path]
    neo.sd_models.model_data.forge_hash = str(neo.sd_models.model_data.forge_loading_parameters)
    utils = sys.modules["backend.utils"]
    utils.reads.clear()
    host().load_state_dict(merged(neo, "A-kontext.safetensors"), "A-kontext.safetensors", "k")
    assert utils.reads == [vae_path]
    assert sys.modules["backend.args"].dynamic_args["kontext"] is True
    v = neo.shared.sd_model.forge_objects.vae.model.state_dict()
    assert all(torch.all(t == 0.25) for t in v.values())


def test_a_merge_neo_cannot_recognise_is_one_error_and_the_selection_comes_back(neo):
    a, _ = two_models(neo)
    loader = sys.modules["backend.loader"]
    original = loader.load_torch_file
    with pytest.raises(MergeError, match="could not build a model from the merge.*Failed to recognize model type"):
        host().load_state_dict({"something.else": torch.zeros(2)}, "A.safetensors", "bad")
    assert loader.load_torch_file is original
    assert neo.sd_models.model_data.forge_hash == ""
    p, _ = neo.txt2img("a cat", steps=1)  # the next generation loads the selected checkpoint again
    assert torch.equal(p.unet_snapshots[-1][2][KEY], a["model." + KEY].to(torch.float32))


def test_a_neo_whose_loader_does_not_ask_for_the_path_is_told_not_trusted(neo, monkeypatch):
    """If a Neo version stops reading through backend.loader.load_torch_file, what got loaded is model A
    from its file: that is an error (never "loaded" with A's weights), and the next generation reloads."""
    two_models(neo)
    loader = sys.modules["backend.loader"]
    import safetensors.torch

    def split_elsewhere(sd, additional_state_dicts=None):
        return loader.preprocess_state_dict(safetensors.torch.load_file(sd))
    monkeypatch.setattr(loader, "split_state_dict", split_elsewhere)
    with pytest.raises(MergeError, match="did not read the checkpoint through backend.loader.load_torch_file"):
        host().load_state_dict(merged(neo), "A.safetensors", "x")
    assert neo.sd_models.model_data.forge_hash == ""
    assert not hasattr(neo.shared.sd_model, "blockmerge_label")


def test_the_tabs_generate_keeps_the_merge_even_when_the_selection_changed(neo):
    """Neo's processing calls `forge_model_reload` under its own imported name: both names return the loaded
    merge while the tab generates, and are put back afterwards."""
    two_models(neo)
    sd = merged(neo, alpha=0.3)
    h = host()
    h.load_state_dict(sd, "A.safetensors", "mix")
    reload_sd, reload_proc = neo.sd_models.forge_model_reload, neo.processing.forge_model_reload
    neo.shared.opts.data["sd_model_checkpoint"] = "B.safetensors"  # the user picks B in the top bar...
    __import__("modules_forge.main_entry", fromlist=["x"]).refresh_model_loading_parameters()
    n = len(neo.sd_models.calls)
    out = h.generate(GenSettings(prompt="a cat", steps=1, seed=1, width=64, height=64))
    assert "BlockMerge: mix" in out.infotext  # ...and the tab still previews the merge
    assert not [c for c in neo.sd_models.calls[n:] if c[0] == "forge_model_reload"]
    assert neo.sd_models.forge_model_reload is reload_sd and neo.processing.forge_model_reload is reload_proc
    neo.txt2img("a cat", steps=1)  # the webui's own txt2img: B, from its file
    assert neo.shared.sd_model.sd_checkpoint_info.name == "B.safetensors"


def test_nothing_imports_what_neo_removed(neo):
    two_models(neo)
    neo.add_lora("style", "sd1", seed=5)
    neo.load_scripts()
    h = host()
    h.load_state_dict(merged(neo), "A.safetensors", "mix")
    h.generate(GenSettings(prompt="a cat <lora:style:1:1:lbw=OUTD>", steps=2, seed=1, width=64, height=64))
    h.restore()
    assert "modules.sd_hijack" not in sys.modules
    for name in ("load_model", "read_state_dict", "reload_model_weights"):
        assert not hasattr(neo.sd_models, name)


# ---- LoRA block weights over Neo's LoRAAdapter patches -----------------------------------------------------
def test_block_weights_scale_neos_adapter_patches_without_touching_its_cache(neo):
    two_models(neo)
    lora_sd, targets = neo.add_lora("style", "sd1", seed=5, te=False)
    neo.load_scripts()
    neo.txt2img("a cat <lora:style:1>", steps=1)  # the builtin's own patches, cached
    m = neo.shared.sd_model
    cached = m.forge_objects_after_applying_lora.unet.lora_patches
    (ident, inner), = cached.items()
    adapters = {k: [e[1] for e in entries] for k, entries in inner.items()}
    before = {k: [list(e) for e in entries] for k, entries in inner.items()}
    adapter = next(iter(adapters.values()))[0]
    assert type(adapter).__name__ == "LoRAAdapter"
    with pytest.raises(TypeError, match="not subscriptable"):
        adapter[1]  # what LBW did (LBW #192); we never index into it
    p, _ = neo.txt2img("a cat <lora:style:1:1:lbw=1,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1>", steps=1)
    snap = p.unet_snapshots[-1][2]
    base = {k: v for k, v in neo.shared.sd_model.forge_objects_original.unet.model.lora_loader.backup.items()}
    seen = {"in": 0, "out": 0}
    for t in targets:
        if not t.key.startswith("model.diffusion_model."):
            continue
        k = t.key[len("model."):]
        s = strength(snap[k], base[k], delta(lora_sd, t))
        part = "in" if ".input_blocks." in k else ("out" if ".output_blocks." in k else None)
        if part == "in":
            assert s == pytest.approx(0.0, abs=1e-5)
        elif part == "out":
            assert s == pytest.approx(1.0, abs=1e-5)
        if part:
            seen[part] += 1
    assert seen["in"] > 0 and seen["out"] > 0
    # Neo's cached patches are what they were: same dict, same lists, same adapter objects
    assert m.forge_objects_after_applying_lora.unet.lora_patches is cached and list(cached) == [ident]
    assert {k: [list(e) for e in entries] for k, entries in inner.items()} == before
    assert all(e[1] is a for k, entries in inner.items() for e, a in zip(entries, adapters[k]))


def test_a_patcher_without_lora_patches_is_one_log_line_not_a_traceback(neo, caplog):
    """A Neo built on Comfy's own ModelPatcher (base.py 6c627e6f keeps `self.patches` per parameter and
    only a stub `lora_patches`) cannot be attributed per LoRA: nothing is applied, one error line."""
    from lib_merge.webui import lbw_forge
    lbw_forge._told.clear()

    class ComfyPatcher:
        patches = {"diffusion_model.x.weight": [(1.0, object(), 1.0, None, None)]}
    job = type("J", (), {"uses": [], "arch": None})()
    with caplog.at_level(logging.ERROR, logger="lib_merge"):
        p = ComfyPatcher()
        assert lbw_forge.ForgeApplier()._weighted(p, job, (), "unet") is p
        assert lbw_forge.ForgeApplier()._weighted(p, job, (), "unet") is p
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "keeps no lora_patches" in lines[0] and "Fix:" in lines[0]


# ---- Flux LoRAs: block from the model key, through Neo's adapters and offsets -------------------------------
FLUX_LBW = {"CLIP": 0.5, "T5": 0.0, "IN": 1.0, "D00": 1.0, "D01": 0.0, "D02": 0.25, "S00": 0.0, "S01": 1.0,
            "S02": 0.75, "S03": 0.0, "OUT": 0.5}


def _flux_weights() -> str:
    """61 values in LBW's BLOCKIDFLUX order (CLIP, T5, IN, D00..D18, S00..S37, OUT); the tiny model has
    3 double and 4 single blocks, so the others name blocks it does not have."""
    order = ["CLIP", "T5", "IN", *(f"D{i:02d}" for i in range(19)), *(f"S{i:02d}" for i in range(38)), "OUT"]
    return ",".join(str(FLUX_LBW.get(b, 0.0)) for b in order)


@pytest.mark.parametrize("fmt", ["kohya", "diffusers"])
def test_flux_lora_block_weights_on_neo(neo, fmt):
    """A Flux LoRA with lbw= of 61 values: each weight of the live model (transformer, CLIP-L, T5) equals
    W + m · r(block) · ΔW, computed in float64 by tests/flux_lora_synth.expected from the LoRA's own
    modules; the diffusers format lands split q/k/v on rows of the fused qkv (Neo's offsets) and
    norm_out.linear with its halves swapped (Neo's function)."""
    from lib_merge.arch.flux_layouts import FLUX_TINY, checkpoint
    from lib_merge.io.safetensors_io import save_tensors
    from tests import flux_lora_synth as fl
    g = torch.Generator().manual_seed(3)
    sd = {k: torch.randn(s, generator=g) for k, s in checkpoint(FLUX_TINY, "dev", all_in_one=True).items()}
    save_tensors(os.path.join(neo.models_dir, "F.safetensors"), sd)
    neo.sd_models.list_models()
    model = neo.load("F.safetensors")
    assert model.is_flux and type(model).__name__ == "Flux"
    mods = fl.logical(seed=4, te=True)
    save_tensors(os.path.join(neo.lora_dir, "fl.safetensors"), fl.write(mods, fmt))
    neo.networks.list_available_networks(neo.lora_dir)
    neo.load_scripts()
    p, processed = neo.txt2img(f"a cat <lora:fl:0.8:1.2:lbw={_flux_weights()}>", steps=1)
    assert "LBW error" not in p.extra_generation_params, p.extra_generation_params
    live = {"model." + k: v for k, v in p.unet_snapshots[-1][2].items()}
    live.update({"text_encoders." + k: v for k, v in p.te_snapshots[-1][1].items()})
    kept = [m for m in mods if fmt == "kohya" or not m.bfl.startswith("t5:")]  # diffusers trainers save CLIP only
    exp = fl.expected(sd, [(kept, 0.8, 1.2, 0)], lambda i, block, bfl: FLUX_LBW[block])
    assert len(exp) > 40
    for key, want in exp.items():
        assert torch.allclose(live[key].double(), torch.from_numpy(want), atol=2e-4), key
    # blocks at 0 really are off, and a block at 1 really is on (the checks above are not vacuous)
    off = [k for k in exp if ".double_blocks.1." in k]
    on = [k for k in exp if ".single_blocks.1." in k]
    assert off and all(torch.equal(live[k], sd[k]) for k in off)
    assert on and all(not torch.equal(live[k], sd[k]) for k in on)


# ---- the webui's temporary images folder -------------------------------------------------------------------
def test_neo_temp_folder_for_gradio_images_exists_after_start_up(neo):
    """Neo saves each image a Gradio output returns into opts.temp_dir (<webui>/tmp by default) and creates
    that folder only when the setting changes (modules/ui_tempdir.py save_pil_to_file / on_tmpdir_changed,
    read in ivanuser/stable-diffusion-webui-Nukem neo c24dc1c2). In a real build of it the tab's first image
    failed with FileNotFoundError until the extension made the folder at start-up."""
    folder = neo.shared.opts.temp_dir
    assert folder and not os.path.exists(folder)
    neo.load_scripts()
    assert os.path.isdir(folder)


def test_temp_folder_that_cannot_be_made_is_one_warning(neo, caplog, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    neo.shared.opts.data["temp_dir"] = str(blocker / "tmp")
    from lib_merge.webui.tab import ensure_image_temp_dir
    with caplog.at_level(logging.WARNING, logger="lib_merge"):
        ensure_image_temp_dir()
    assert [r.levelno for r in caplog.records] == [logging.WARNING] and "Fix:" in caplog.records[0].getMessage()
