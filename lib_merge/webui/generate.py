"""Render with the webui's own txt2img pipeline and whatever model is loaded (WEBUI.md §6).

`p` gets a private ScriptRunner holding only our two AlwaysVisible scripts (LoRA block weights, so `lbw=` tags in the
prompt work here too, and the merged model's identity in the infotext) and no other extension needs arguments. The caller holds nothing: this takes
`queue_lock` (the lock `/sdapi/v1/txt2img` holds), brackets the job with `shared.state.begin/end`
and always closes `p` (which resets the shared cond caches when persistence is off).
"""
from __future__ import annotations

from contextlib import closing, nullcontext
from typing import Any

from ..ui.host import GenSettings, Generated, Progress
from .detect import is_forge, is_neo

PROGRESS_ATTR = "blockmerge_progress"  # read by the on_cfg_denoiser hook (lbw_runtime)
_PASSTHROUGH = ("styles", "subseed", "subseed_strength", "n_iter", "enable_hr", "hr_scale", "hr_upscaler",
                "hr_second_pass_steps", "denoising_strength", "hr_sampler_name", "hr_prompt", "hr_negative_prompt",
                "distilled_cfg_scale", "hr_cfg", "hr_distilled_cfg", "restore_faces", "tiling", "clip_skip")


def build(settings: GenSettings, label: str | None) -> Any:
    from modules import processing
    from modules.shared import opts
    kw: dict[str, Any] = dict(
        outpath_samples=opts.outdir_samples or opts.outdir_txt2img_samples,
        outpath_grids=opts.outdir_grids or opts.outdir_txt2img_grids,
        prompt=settings.prompt, negative_prompt=settings.negative_prompt, seed=int(settings.seed),
        sampler_name=settings.sampler_name, scheduler=settings.scheduler, steps=int(settings.steps),
        cfg_scale=float(settings.cfg_scale), width=int(settings.width), height=int(settings.height),
        batch_size=int(settings.batch_size), n_iter=1, do_not_save_grid=True,
    )
    fields = getattr(processing.StableDiffusionProcessingTxt2Img, "__dataclass_fields__", {})
    for key in _PASSTHROUGH:
        if key in settings.extra and key in fields:
            kw[key] = settings.extra[key]
    if "scheduler" not in fields:
        kw.pop("scheduler")
    if is_forge() and "hr_additional_modules" in fields:
        kw["hr_additional_modules"] = ["Use same choices"]  # None raises in Forge's hires path; [] reloads modules
    p = processing.StableDiffusionProcessingTxt2Img(**kw)
    if label:
        p.extra_generation_params["BlockMerge"] = label
    _attach_lbw(p)
    return p


def _attach_lbw(p: Any) -> None:
    """Our two AlwaysVisible scripts: LoRA block weights (args: enabled) and the merged model's identity."""
    from modules import scripts
    from . import identity_script
    from .identity_script import BlockMergeModelIdentity
    from .lbw_script import LoraBlockWeightScript
    runner = scripts.ScriptRunner()
    lbw, ident = LoraBlockWeightScript(), BlockMergeModelIdentity()
    lbw.filename = LoraBlockWeightScript.source_file
    ident.filename = identity_script.__file__
    lbw.args_from, lbw.args_to = 1, 2
    ident.args_from = ident.args_to = 2
    for s in (lbw, ident):
        s.is_txt2img, s.is_img2img = True, False
    runner.scripts = [lbw, ident]
    runner.alwayson_scripts = [lbw, ident]
    p.is_api = True  # builtin UI-only scripts would be skipped; there are none here anyway
    p.script_args = [0, True]
    p.scripts = runner


def _keep_merge() -> Any:
    """Forge Neo: a merge loaded from memory must not be swapped for a file mid-generation (neo.keep_loaded)."""
    if is_neo():
        from .neo import keep_loaded
        return keep_loaded()
    return nullcontext()


def generate(settings: GenSettings, progress: Progress | None, label: str | None) -> Generated:
    from modules import processing, shared
    from modules.call_queue import queue_lock
    p = build(settings, label)
    if progress is not None:
        setattr(p, PROGRESS_ATTR, progress)
    with queue_lock:
        shared.state.begin(job="blockmerge_generate")
        try:
            with closing(p), _keep_merge():
                processed = processing.process_images(p)
        finally:
            shared.state.end()
    info = processed.infotexts[0] if getattr(processed, "infotexts", None) else processed.info
    return Generated(list(processed.images), info)
