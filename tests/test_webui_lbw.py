"""The LoRA block-weight script in A1111 1.10 and Forge, driven through the webui double's hook order.

Strengths are measured, not assumed: every UNet evaluation and text-encoder run records the weights
the model computes with, and a module's strength is the s in W = W0 + s·ΔW.
"""
from __future__ import annotations

import copy

import pytest
import torch

from lib_merge.arch.blocks import SD1
from lib_merge.lora.presets import DEFAULT_BOOK
from lib_merge.lora.ratios import resolve
from lib_merge.lora.tag import parse_tag
from tests.webui_double.fixtures import a1111_fixture, forge_fixture, strengths, webui_fixture  # noqa: F401  (fixtures)

LIST17 = "1,0,0.25,0.5,0.75,1,0,0.5,1,0.3,0,2,1,0,0.5,1,0.8"


def setup(w, *names, te=True, conv=False):
    w.add_checkpoint("A.safetensors", "sd1", seed=1)
    w.load("A.safetensors")
    loras = {n: w.add_lora(n, "sd1", seed=10 + i, te=te, conv=conv) for i, n in enumerate(names)}
    base, _ = w.txt2img("a cat", steps=2)
    return loras, base.unet_snapshots[-1][2], base.te_snapshots[-1][1]


def expected(tag_text: str, targets, part: str) -> dict[str, float]:
    tag = parse_tag(tag_text)
    ratios = resolve(tag, SD1, DEFAULT_BOOK).blocks
    return {t.key: ratios[SD1.block_of(t.key)] * (tag.te if t.key.startswith("cond_stage_model.") else tag.unet)
            for t in targets if t.key.startswith("cond_stage_model." if part == "te" else "model.")}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- strengths reach the right modules -------------------------------------------------------------
def test_block_strengths_reach_every_module(webui):
    loras, unet0, te0 = setup(webui, "style")
    sd, targets = loras["style"]
    tag = f"<lora:style:0.8:0.6:lbw={LIST17}>"
    p, res = webui.txt2img(f"a cat {tag}", steps=2)
    assert res.images and not webui.errors.reported
    got_unet = strengths(webui.flavor, p.unet_snapshots[-1][2], unet0, sd, targets, "unet")
    got_te = strengths(webui.flavor, p.te_snapshots[-1][1], te0, sd, targets, "te")
    assert got_unet == pytest.approx(expected(tag, targets, "unet"), abs=1e-6)
    assert got_te == pytest.approx(expected(tag, targets, "te"), abs=1e-6)
    assert len(set(round(v, 6) for v in got_unet.values())) > 3  # really block by block


def test_all_is_the_plain_lora_and_none_is_no_lora(webui):
    setup(webui, "style", conv=True)  # conv: time_embed, conv_in/out, resnets too (modules outside blocks)
    none_, _ = webui.txt2img("a cat", steps=2)
    plain, _ = webui.txt2img("a cat <lora:style:1>", steps=2)
    all_, _ = webui.txt2img("a cat <lora:style:1:1:lbw=ALL>", steps=2)
    zero, _ = webui.txt2img("a cat <lora:style:1:1:lbw=NONE>", steps=2)
    plain_again, _ = webui.txt2img("a cat <lora:style:1>", steps=2)
    assert same(all_.unet_snapshots[-1][2], plain.unet_snapshots[-1][2])
    assert same(all_.te_snapshots[-1][1], plain.te_snapshots[-1][1])
    assert same(zero.unet_snapshots[-1][2], none_.unet_snapshots[-1][2])
    assert same(zero.te_snapshots[-1][1], none_.te_snapshots[-1][1])
    assert same(plain_again.unet_snapshots[-1][2], plain.unet_snapshots[-1][2])
    assert same(plain_again.te_snapshots[-1][1], plain.te_snapshots[-1][1])
    assert not same(plain.unet_snapshots[-1][2], none_.unet_snapshots[-1][2])


def test_base_zero_is_te_zero(webui):
    setup(webui, "style")
    weighted, _ = webui.txt2img("a cat <lora:style:1:1:lbw=0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1>", steps=2)
    te_off, _ = webui.txt2img("a cat <lora:style:0:1>", steps=2)
    assert same(weighted.unet_snapshots[-1][2], te_off.unet_snapshots[-1][2])
    assert same(weighted.te_snapshots[-1][1], te_off.te_snapshots[-1][1])


def test_loras_are_paired_by_name_and_a_lora_without_te_works(webui):
    loras, unet0, te0 = setup(webui, "first", "second")
    webui.add_lora("unet_only", "sd1", seed=30, te=False)
    tag_a, tag_b = "<lora:second:1:1:lbw=OUTD>", "<lora:first:0.5:0.5:lbw=INS>"
    p, _ = webui.txt2img(f"a cat {tag_a} {tag_b}", steps=2)
    # two LoRAs: measure on layers each touches alone is impossible (same layers), so compare with the
    # sum of the single-LoRA runs
    only_a, _ = webui.txt2img(f"a cat {tag_a}", steps=2)
    only_b, _ = webui.txt2img(f"a cat {tag_b}", steps=2)
    for k, w in p.unet_snapshots[-1][2].items():
        want = only_a.unet_snapshots[-1][2][k].double() + only_b.unet_snapshots[-1][2][k].double() - unet0[k].double()
        assert torch.allclose(w.double(), want, atol=1e-5), k
    p2, res = webui.txt2img("a cat <lora:unet_only:1:1:lbw=MIDD>", steps=2)
    assert res.images and not webui.errors.reported
    assert same(p2.te_snapshots[-1][1], te0)


# ---- cached objects stay untouched -----------------------------------------------------------------
def _a1111_cache_state(networks):
    out = {}
    for net in list(networks.loaded_networks) + list(networks.networks_in_memory.values()):
        mods = {k: (id(m), m.__class__, sorted(vars(m)), m.up_model.clone(), m.down_model.clone())
                for k, m in net.modules.items()}
        out[id(net)] = (net.name, id(net.modules), sorted(vars(net)), mods)
    return out


def _forge_cache_state(sd_model):
    objects = sd_model.forge_objects_after_applying_lora
    out = []
    for patcher in (objects.unet, objects.clip.patcher):
        for key, inner in patcher.lora_patches.items():
            out.append((key, id(inner), {k: (id(v), [(e[0], id(e[1]), e[2]) for e in v]) for k, v in inner.items()}))
    return (sd_model.current_lora_hash, id(objects.unet), id(objects.clip), out)


def _equal(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_cached_lora_objects_are_never_written(webui):
    setup(webui, "style")
    webui.txt2img("a cat <lora:style:1:1>", steps=2)
    take = (lambda: _a1111_cache_state(webui.networks)) if webui.flavor == "a1111" else \
        (lambda: _forge_cache_state(webui.shared.sd_model))
    before = copy.deepcopy(take()) if webui.is_forge else take()
    p, _ = webui.txt2img(f"a cat <lora:style:1:1:lbw={LIST17}:stop=1>", steps=3, enable_hr=True,
                         **({"hr_additional_modules": ["Use same choices"]} if webui.is_forge else {}))
    assert p.unet_snapshots
    webui.txt2img("a cat <lora:style:1:1>", steps=2)
    assert _equal(take(), before)
    if webui.flavor == "a1111":
        assert all(not n.name.count("@lbw") for n in webui.networks.loaded_networks)  # originals are back
        assert dict(webui.networks.networks_in_memory) == {}  # what we lent went back (limit 0)


# ---- start / stop -------------------------------------------------------------------------------------
def _unet_strength_by_step(w, p, sd, targets, unet0, pass_name="first"):
    out = []
    for name, step, snap in p.unet_snapshots:
        if name == pass_name:
            s = strengths(w.flavor, snap, unet0, sd, targets, "unet")
            out.append((step + 1, round(sum(s.values()) / len(s), 6)))
    return out


@pytest.mark.parametrize("sampler", ["Euler", "Heun"])
def test_start_stop_switch_at_the_right_steps(webui, sampler):
    loras, unet0, _ = setup(webui, "style")
    sd, targets = loras["style"]
    p, _ = webui.txt2img("a cat <lora:style:1:1:start=2:stop=4>", steps=6, sampler_name=sampler)
    by_step = _unet_strength_by_step(webui, p, sd, targets, unet0)
    on = {step for step, s in by_step if s == 1.0}
    off = {step for step, s in by_step if s == 0.0}
    assert on == {3, 4} and off == {1, 2, 5, 6}
    if sampler == "Heun":
        assert len(by_step) == 11  # two evaluations per step but the last


def test_hires_counts_steps_again_and_applies_once(webui):
    loras, unet0, te0 = setup(webui, "style")
    sd, targets = loras["style"]
    extra = {"hr_additional_modules": ["Use same choices"]} if webui.is_forge else {}
    tag = f"<lora:style:0.7:0.9:lbw={LIST17}>"
    p, res = webui.txt2img(f"a cat {tag}", steps=2, enable_hr=True, hr_second_pass_steps=3, **extra)
    assert res.images and not webui.errors.reported
    for name, _, snap in p.unet_snapshots:
        assert strengths(webui.flavor, snap, unet0, sd, targets, "unet") == pytest.approx(expected(tag, targets, "unet"), abs=1e-6)
    for what, snap in p.te_snapshots:
        assert strengths(webui.flavor, snap, te0, sd, targets, "te") == pytest.approx(expected(tag, targets, "te"), abs=1e-6), what
    assert {n for n, _, _ in p.unet_snapshots} == {"first", "hires"}
    p, _ = webui.txt2img("a cat <lora:style:1:1:start=1:stop=2>", steps=4, enable_hr=True, hr_second_pass_steps=3, **extra)
    assert _unet_strength_by_step(webui, p, sd, targets, unet0, "hires") == [(1, 0.0), (2, 1.0), (3, 0.0)]
    assert [s for _, s in _unet_strength_by_step(webui, p, sd, targets, unet0, "first")] == [0.0, 1.0, 0.0, 0.0]


def test_batch_count_keeps_weights_in_every_batch(webui):
    loras, unet0, _ = setup(webui, "style")
    sd, targets = loras["style"]
    tag = "<lora:style:1:1:lbw=OUTS>"
    p, res = webui.txt2img(f"a cat {tag}", steps=2, n_iter=3, batch_size=2)
    assert len(res.images) == 6
    for _, _, snap in p.unet_snapshots:
        assert strengths(webui.flavor, snap, unet0, sd, targets, "unet") == pytest.approx(expected(tag, targets, "unet"), abs=1e-6)


# ---- re-merges only when weights change ------------------------------------------------------------------
def _merges(w) -> dict:
    """How often each layer (A1111) / each patcher's loader (Forge) merged LoRA weights."""
    if w.flavor == "a1111":
        return dict(w.networks.merges)
    m = w.shared.sd_model
    return {"unet": m.forge_objects_original.unet.lora_loader.merges,
            "clip": m.forge_objects_original.clip.patcher.lora_loader.merges}


def _added(before: dict, after: dict) -> dict:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}


def test_same_weights_do_not_re_merge_and_changed_weights_merge_once(webui):
    setup(webui, "style")
    webui.txt2img("a cat <lora:style:1:1:lbw=INS>", steps=3)
    before, loads = _merges(webui), sum(webui.networks.disk_loads.values())
    webui.txt2img("a cat <lora:style:1:1:lbw=INS>", steps=3)
    assert _added(before, _merges(webui)) == {}
    webui.txt2img("a cat <lora:style:1:1:lbw=0.5,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1>", steps=3)
    changed = _added(before, _merges(webui))
    assert changed and set(changed.values()) == {1}  # every layer / loader that changed: once
    if webui.is_forge:
        assert changed == {"unet": 1, "clip": 1}
    before = _merges(webui)
    webui.txt2img("a cat <lora:style:1:1:lbw=0.5,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1>", steps=3)
    assert _added(before, _merges(webui)) == {}
    assert sum(webui.networks.disk_loads.values()) == loads  # never read from disk again


def test_hires_does_not_read_the_lora_again(a1111):
    setup(a1111, "style")
    a1111.txt2img("a cat <lora:style:1>", steps=2)
    loads = sum(a1111.networks.disk_loads.values())
    a1111.txt2img("a cat <lora:style:1:1:lbw=INS>", steps=2, enable_hr=True, n_iter=2)
    a1111.txt2img("a cat <lora:style:1:1:lbw=INS>", steps=2, enable_hr=True)
    assert sum(a1111.networks.disk_loads.values()) == loads


# ---- bad tags, the switch, infotext ---------------------------------------------------------------------
@pytest.mark.parametrize("tag,reason", [
    ("<lora:style:1:1:lbw=NOPE>", "unknown preset 'NOPE'"),
    ("<lora:style:1:INS>", "old form"),
    ("<lora:style:1:1:lbw=1,0,1>", "3 block weights"),
    ("<lora:style:1:1:lbw=1,1,1,1,1,1,1,1,1,1,1,1>", "12 values"),
    ("<lora:style:1:1:start=5:stop=2>", "start=5 is not before stop=2"),
])
def test_a_bad_tag_stops_the_job_and_says_why(webui, tag, reason, caplog):
    setup(webui, "style")
    p, res = webui.txt2img(f"a cat {tag}", steps=2)
    assert res.images == [] and p.unet_snapshots == []
    assert webui.shared.state.interrupted
    assert reason in res.comments and tag in res.comments
    assert reason in p.extra_generation_params["LBW error"]
    # a user's mistake: one console line, and nothing raised into the ScriptRunner, which would print
    # it with a traceback (errors.report(..., exc_info=True) in the real modules/scripts.py)
    assert webui.errors.reported == []
    ours = [r for r in caplog.records if r.name == "lib_merge"]
    assert len(ours) == 1 and reason in ours[0].getMessage() and ours[0].exc_info is None


def test_the_switch_turns_block_weights_off(webui):
    setup(webui, "style")
    plain, _ = webui.txt2img("a cat <lora:style:1>", steps=2)
    off, _ = webui.txt2img("a cat <lora:style:1:1:lbw=NONE>", steps=2, enabled=False)
    assert same(off.unet_snapshots[-1][2], plain.unet_snapshots[-1][2])
    assert off.extra_generation_params["LBW"] == "off"


def test_infotext_keeps_tags_and_expands_presets(webui):
    setup(webui, "style")
    p, res = webui.txt2img("a cat <lora:style:1:1:lbw=OUTD:lbwe=ATTNDEEPOFF>", steps=2)
    assert "<lora:style:1:1:lbw=OUTD:lbwe=ATTNDEEPOFF>" in res.info
    assert p.extra_generation_params["LBW presets"].startswith("OUTD=1,0,0")
    assert "ATTNDEEPOFF=IN05-OUT05:attn:0" in p.extra_generation_params["LBW elemental"]


def test_random_entries_follow_the_image_seed(webui):
    setup(webui, "style")
    a, _ = webui.txt2img("a cat <lora:style:1:1:lbw=R,R,R,R,R,R,R,R,R,R,R,R,R,R,R,R,R>", steps=2, seed=7)
    b, _ = webui.txt2img("a cat <lora:style:1:1:lbw=R,R,R,R,R,R,R,R,R,R,R,R,R,R,R,R,R>", steps=2, seed=7)
    assert same(a.unet_snapshots[-1][2], b.unet_snapshots[-1][2])
    assert a.extra_generation_params["LBW seeds"] == "style=7"


def test_tag_text_uses_the_user_presets_file(webui, tmp_path):
    setup(webui, "style")
    path = tmp_path / "lbw.txt"
    path.write_text("MINE:1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0\n")
    webui.shared.opts.data["blockmerge_lbw_presets"] = str(path)
    p, res = webui.txt2img("a cat <lora:style:1:1:lbw=MINE>", steps=2)
    assert res.images and p.extra_generation_params["LBW presets"] == "MINE=1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0"


def test_unload_puts_the_originals_back(a1111):
    setup(a1111, "style")
    cls = a1111.lbw_class()
    runner, args = a1111.scripts.runner_with(cls, [True])
    p = a1111.processing.StableDiffusionProcessingTxt2Img(prompt="a cat <lora:style:1:1:lbw=INS>", steps=2)
    p.scripts, p.script_args = runner, args
    p.setup_prompts()
    runner.process(p)
    p.prompts, p.seeds, p.subseeds = p.all_prompts, p.all_seeds, p.all_subseeds
    p.parse_extra_network_prompts()
    a1111.networks.extra_network_lora.activate(p, p.extra_network_data["lora"])
    original = a1111.networks.loaded_networks[0]
    runner.after_extra_networks_activate(p, batch_number=0, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds,
                                         extra_network_data=p.extra_network_data)
    assert a1111.networks.loaded_networks[0] is not original
    assert a1111.networks.networks_in_memory["style"] is original  # lent for the hires activation
    a1111.script_callbacks.script_unloaded_callback()
    assert a1111.networks.loaded_networks[0] is original and "style" not in a1111.networks.networks_in_memory


def test_a_different_hires_prompt_gets_its_own_weights(webui):
    """The hires pass activates its own tags; its conds and UNet use them (also when Forge's builtin
    reloads the LoRAs for a different set, which WEBUI.md lists as a limitation of the plain recipe)."""
    loras, unet0, te0 = setup(webui, "style")
    sd, targets = loras["style"]
    extra = {"hr_additional_modules": ["Use same choices"]} if webui.is_forge else {}
    first, hires = "<lora:style:1:1:lbw=INS>", f"<lora:style:0.5:0.7:lbw={LIST17}>"
    p, res = webui.txt2img(f"a cat {first}", hr_prompt=f"a cat {hires}", steps=2, enable_hr=True, **extra)
    assert res.images and not webui.errors.reported
    for name, _, snap in p.unet_snapshots:
        tag = first if name == "first" else hires
        assert strengths(webui.flavor, snap, unet0, sd, targets, "unet") == pytest.approx(expected(tag, targets, "unet"), abs=1e-6)
    assert {what for what, _ in p.te_snapshots} == {"first", "hires"}
    for what, snap in p.te_snapshots:
        tag = first if what == "first" else hires
        assert strengths(webui.flavor, snap, te0, sd, targets, "te") == pytest.approx(expected(tag, targets, "te"), abs=1e-6)


def test_a1111_lowvram_conds_activate_twice_and_still_apply_once(a1111):
    loras, unet0, te0 = setup(a1111, "style")
    sd, targets = loras["style"]
    a1111.shared.sd_model.lowvram = True  # setup_conds activates hires and first-pass networks again
    tag = f"<lora:style:0.8:1:lbw={LIST17}>"
    p, _ = a1111.txt2img(f"a cat {tag}", steps=2, enable_hr=True)
    for _, _, snap in p.unet_snapshots:
        assert strengths("a1111", snap, unet0, sd, targets, "unet") == pytest.approx(expected(tag, targets, "unet"), abs=1e-6)
    for _, snap in p.te_snapshots:
        assert strengths("a1111", snap, te0, sd, targets, "te") == pytest.approx(expected(tag, targets, "te"), abs=1e-6)


def test_cond_cache_never_serves_stale_text_encoder_weights(webui, tmp_path):
    """The cond cache key holds the prompt, not the weights: a preset edited on disk or the switch
    turned off must still change the conds."""
    loras, unet0, te0 = setup(webui, "style")
    sd, targets = loras["style"]
    path = tmp_path / "lbw.txt"
    webui.shared.opts.data["blockmerge_lbw_presets"] = str(path)
    prompt = "a cat <lora:style:1:1:lbw=MINE>"

    def te_values(p):
        return {round(v, 5) for v in strengths(webui.flavor, p.te_snapshots[-1][1], te0, sd, targets, "te").values()}

    for base in ("0.5", "0"):
        path.write_text(f"MINE:{base},1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1\n")
        p, _ = webui.txt2img(prompt, steps=1)
        assert te_values(p) == {float(base)}
    p, _ = webui.txt2img(prompt, steps=1, enabled=False)
    assert te_values(p) == {1.0}


def test_a_hires_prompt_without_our_tags_gets_the_plain_lora(webui):
    loras, unet0, te0 = setup(webui, "style")
    sd, targets = loras["style"]
    extra = {"hr_additional_modules": ["Use same choices"]} if webui.is_forge else {}
    p, _ = webui.txt2img("a cat <lora:style:1:1:lbw=0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0>", hr_prompt="a cat <lora:style:1>",
                         steps=2, enable_hr=True, **extra)
    hires_te = [snap for what, snap in p.te_snapshots if what == "hires"][-1]
    assert set(round(v, 5) for v in strengths(webui.flavor, hires_te, te0, sd, targets, "te").values()) == {1.0}
    hires_unet = [snap for name, _, snap in p.unet_snapshots if name == "hires"][-1]
    assert set(round(v, 5) for v in strengths(webui.flavor, hires_unet, unet0, sd, targets, "unet").values()) == {1.0}
