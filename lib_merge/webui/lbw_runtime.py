"""The LoRA block-weight script at generation time: one runtime per process, hooks that call it.

The hook functions here are module-level, so registering them again after a "Reload custom script
bodies" (the same function objects, removed first) stays idempotent, and `on_cfg_denoiser` is
registered once, not per Script instance. The runtime is the one registry of what we installed in
webui-owned objects; everything per generation lives on `p` (`p.blockmerge_lbw`).

Order of events (WEBUI.md §3): `process` validates every tag of every prompt up front, so a bad tag
stops the job before anything is sampled (hook exceptions are only logged by the webui, so the
job is stopped with `shared.state.interrupt()`, and the reason goes into the comments and the
infotext); each extra-network activation (first pass, hires pass, and the extra ones in
`setup_conds`) installs the weights for step 1 of that pass; `on_cfg_denoiser` switches LoRAs with
start=/stop= on and off; the originals go back after every batch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..arch.blocks import Architecture
from ..errors import MergeError
from ..lora.presets import PresetBook
from ..lora.ratios import BlockRatios, resolve
from . import lbw_tags
from .lbw_files import PresetFiles
from .lbw_tags import Use

log = logging.getLogger("lib_merge")
ATTR = "blockmerge_lbw"
PROGRESS_ATTR = "blockmerge_progress"
TITLE = "LoRA Block Weight"


@dataclass
class Job:
    """What one processing object (`p`) needs between hooks."""
    owner: int  # id(p): copies of p (XYZ, other extensions) never act on this job
    enabled: bool
    arch: Architecture | None = None
    presets: PresetBook = field(default_factory=PresetBook.load)
    presets_key: tuple = ()
    uses: list[Use] = field(default_factory=list)  # our tags of the pass being run
    phase: tuple[bool, ...] = ()  # UNet on/off per use at the current step
    seed: int | None = None
    seeds_used: dict[str, int] = field(default_factory=dict)
    presets_error: str | None = None

    def note_seed(self, use: Use, ratios: BlockRatios) -> None:
        if ratios.seed is not None and use.tag.seed is None:
            self.seeds_used[use.name] = ratios.seed

    def phase_at(self, step: int) -> tuple[bool, ...]:
        return tuple(u.unet_on(step) for u in self.uses)

    @property
    def scheduled(self) -> bool:
        return any(u.scheduled for u in self.uses)


def current_step(params: Any) -> int:
    """The step being computed, counted from 1 as the progress bar shows, per pass.

    The denoiser counts its own calls (`step`, reset for every pass) and knows the pass's steps and
    how many calls they take (`total_steps`: twice as many for second-order samplers), which maps a
    call to its step exactly. `state.sampling_step` alone cannot: it is 0 for both the first and the
    second step, since the sampler's callback sets it only after a step ends.
    """
    d = getattr(params, "denoiser", None)
    k, n, total = (getattr(d, a, None) for a in ("step", "steps", "total_steps"))
    if isinstance(k, int) and isinstance(n, int) and isinstance(total, int) and n > 0 and total > 0:
        return min(n - 1, k * n // total) + 1
    return int(getattr(params, "sampling_step", 0)) + 1


def te_state(job: Job) -> str | None:
    """What our text-encoder weights are, as far as cached conds are concerned; None when they equal
    the plain LoRAs' (every use has BASE 1, no elemental rule and is on at step 1)."""
    parts = []
    for u in job.uses:
        r = resolve(u.tag, job.arch, job.presets, job.seed)
        te = tuple(r.blocks.get(b, 1.0) for b in ("BASE", "CLIP", "T5"))  # SD's BASE; Flux's CLIP and T5
        if any(v != 1.0 for v in te) or r.rules or not u.te_on:
            parts.append((u.name, u.tag, te, tuple((x.text, v) for x, v in r.rules), u.te_on))
    return lbw_tags.digest(job.presets_key, *parts) if parts else None


class Runtime:
    def __init__(self, applier: Any, files: PresetFiles, clear_conds: Any):
        self.applier = applier
        self.files = files
        self.clear_conds = clear_conds
        self._book: tuple[tuple, PresetBook] | None = None
        self._last_te: str | None = None

    # ---- helpers --------------------------------------------------------------------------------
    def presets(self) -> tuple[PresetBook, tuple]:
        key = self.files.book_key()
        if self._book is None or self._book[0] != key:
            self._book = (key, self.files.book())
        return self._book[1], key

    def _job(self, p: Any) -> Job | None:
        job = getattr(p, ATTR, None)
        return job if isinstance(job, Job) and job.owner == id(p) else None

    def fail(self, p: Any, message: str) -> None:
        """Stop the job for a user's mistake: the reason in the UI (comment, infotext), one console line.

        Nothing is raised: the webui's ScriptRunner catches what a hook raises and prints it with a
        traceback (A1111 1.10 modules/scripts.py, `errors.report(..., exc_info=True)`), which a typo
        in a prompt must not produce. Interrupt is what stops the job."""
        from modules import shared
        text = f"{TITLE} stopped the job: {message}"
        log.warning("%s", text)
        if hasattr(p, "comment"):
            p.comment(text)
        p.extra_generation_params["LBW error"] = message
        shared.state.interrupt()
        job = self._job(p)
        if job is not None:
            job.enabled = False

    def _note_te(self, p: Any, state: str | None) -> None:
        """Cond caches have no slot for text-encoder weights: empty them when ours are in play or change."""
        if state is not None or state != self._last_te:
            self.clear_conds(p)
        self._last_te = state

    # ---- Script hooks ---------------------------------------------------------------------------
    def process(self, p: Any, enabled: bool, plot_args: Sequence[Any] = ()) -> None:
        """`plot_args`: the script's args after `enabled` (lbw_plot.PlotArgs, positional)."""
        from modules import shared
        from . import analyzer_run
        from .checkpoints import lbw_arch_of_model
        from ..xy.lbw_plot import from_args
        self.applier.restore(p)
        job = Job(id(p), bool(enabled))
        setattr(p, ATTR, job)
        if enabled or analyzer_run.has_placeholder(p):
            job.arch = lbw_arch_of_model(shared.sd_model)
            try:
                job.presets, job.presets_key = self.presets()
            except MergeError as e:  # a broken presets file only matters to prompts that use our tags
                job.presets_error = str(e)
        try:  # lbw=XYZ first: the plot's (or the X/Y/Z axis's) weights for this render
            elements = analyzer_run.prepare(p, bool(enabled), from_args(plot_args), job.arch,
                                            None if job.presets_error else job.presets)
            if elements:
                job.presets = analyzer_run.elements_book(job.presets, elements)
                job.presets_key = (job.presets_key, elements)
        except MergeError as e:
            self.fail(p, str(e))
            return
        prompts = list(getattr(p, "all_prompts", None) or [p.prompt if isinstance(p.prompt, str) else ""])
        prompts += list(getattr(p, "all_hr_prompts", None) or [])
        texts = lbw_tags.tags_in_prompts(prompts)
        if not enabled:
            if texts:
                p.extra_generation_params["LBW"] = "off"
            return
        try:
            if texts and job.presets_error:
                raise MergeError(job.presets_error)
            tags = lbw_tags.validate(texts, job.arch, job.presets)
            if tags:
                p.extra_generation_params.update(lbw_tags.infotext(tags, job.arch, job.presets))
        except MergeError as e:
            self.fail(p, str(e))

    def before_process_batch(self, p: Any) -> None:
        self.applier.restore(p)

    def after_activate(self, p: Any, extra_network_data: Any, seeds: Any) -> None:
        job = self._job(p)
        if job is None or not job.enabled:
            self._note_te(p, None)
            return
        try:
            job.uses = lbw_tags.uses_from_network_data(extra_network_data, job.presets)
            if job.uses and (job.presets_error or job.arch is None):
                raise MergeError(job.presets_error or
                                 f"{job.uses[0].text}: block weights need an SD1, SD2, SDXL or Flux model")
        except MergeError as e:
            job.uses = []
            self.fail(p, str(e))
            return
        job.seed = int(seeds[0]) if seeds else None
        job.phase = job.phase_at(1)
        self.applier.activate(p, job)  # with no tags of ours, this takes back what an earlier pass installed
        self._note_te(p, te_state(job))
        if job.seeds_used:
            p.extra_generation_params["LBW seeds"] = ", ".join(f"{k}={v}" for k, v in job.seeds_used.items())

    def process_batch(self, p: Any) -> None:
        job = self._job(p)
        if job is not None and job.enabled and job.uses:
            self.applier.process_batch(p, job)

    def before_every_sampling(self, p: Any) -> None:
        job = self._job(p)
        if job is not None and job.enabled and job.uses:
            job.phase = job.phase_at(1)
            self.applier.before_sampling(p, job)

    def after_batch(self, p: Any) -> None:
        self.applier.restore(p)

    def postprocess(self, p: Any, processed: Any) -> None:
        """The generation is done: put the originals back, then render a plot it started, if any."""
        from . import analyzer_run
        self.applier.restore(p)
        try:
            analyzer_run.finish(p, processed)
        finally:
            analyzer_run.restore_typed(p)

    # ---- callbacks ------------------------------------------------------------------------------
    def on_cfg_denoiser(self, params: Any) -> None:
        p = getattr(getattr(params, "denoiser", None), "p", None)
        if p is None:
            return
        step = current_step(params)
        progress = getattr(p, PROGRESS_ATTR, None)
        if progress is not None:
            progress(step, int(getattr(params, "total_sampling_steps", 0) or step), "sampling")
        job = self._job(p)
        if job is None or not job.enabled or not job.scheduled:
            return
        phase = job.phase_at(step)
        if phase != job.phase:
            self.applier.switch(p, job, phase)
            job.phase = phase

    def on_script_unloaded(self) -> None:
        self.applier.unload()

    def on_model_loaded(self, sd_model: Any) -> None:
        self.applier.model_changed()
        self._last_te = None


_runtime: Runtime | None = None  # the process's one registry of what we installed in the webui


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        from . import settings
        from .detect import is_forge
        files = PresetFiles(settings.lbw_presets_path, settings.lbwe_presets_path)
        if is_forge():
            from .forge import clear_cond_caches
            from .lbw_forge import ForgeApplier
            _runtime = Runtime(ForgeApplier(), files, clear_cond_caches)
        else:
            from .a1111 import clear_cond_caches
            from .lbw_a1111 import A1111Applier
            _runtime = Runtime(A1111Applier(lambda: bool(settings.get("blockmerge_lbw_keep_in_memory"))),
                               files, clear_cond_caches)
    return _runtime


# ---- module-level hooks: the same function objects across script reloads -------------------------
def on_cfg_denoiser(params: Any) -> None:
    runtime().on_cfg_denoiser(params)


def on_script_unloaded() -> None:
    if _runtime is not None:
        _runtime.on_script_unloaded()


def on_model_loaded(sd_model: Any) -> None:
    if _runtime is not None:
        _runtime.on_model_loaded(sd_model)


def on_infotext_pasted(infotext: str, params: dict) -> None:
    """Pasting an image: presets it used that this machine lacks (or defines otherwise) go inline."""
    recorded, prompt = params.get("LBW presets"), params.get("Prompt")
    if not recorded or not isinstance(prompt, str):
        return
    try:
        book, _ = runtime().presets()
    except MergeError:
        book = PresetBook.load()
    params["Prompt"] = lbw_tags.inline_presets(prompt, str(recorded), book)


def register_callbacks(script_callbacks: Any) -> None:
    """Called from scripts/lora_block_weight.py at import: once per function, whatever the reloads."""
    for register, fn in ((script_callbacks.on_cfg_denoiser, on_cfg_denoiser),
                         (script_callbacks.on_script_unloaded, on_script_unloaded),
                         (script_callbacks.on_model_loaded, on_model_loaded),
                         (script_callbacks.on_infotext_pasted, on_infotext_pasted)):
        remove = getattr(script_callbacks, "remove_callbacks_for_function", None)
        if remove is not None:
            remove(fn)
        register(fn)
