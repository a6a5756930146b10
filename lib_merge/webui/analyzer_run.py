"""The XY plot and the Effective Block Analyzer, rendered by the webui's own processing.

Why from `postprocess`: the user presses Generate with `<lora:mine:1:1:lbw=XYZ>` in the prompt and a
plot mode chosen. The generation runs as usual, with every script the user enabled, except that
`lbw=XYZ` is replaced (in the script's `process`) by the plot's own base weights, so the image it
makes is one of the plot's renders (the analyzer's baseline). When it is done, the script's
`postprocess` renders the other cells: each is a shallow copy of the user's `p` (as the webui's X/Y/Z
plot makes them) with one seed, batch size 1 and an `Override` attribute, passed to
`processing.process_images`. That is the same sampler, size, steps, hires fix and scripts, under the
queue lock the generation already holds; the copy's own `process` puts the cell's weights where
`lbw=XYZ` was, and the existing block-weight machinery applies them (no LoRA object is written).
A copy never starts a plot of its own: it carries an `Override`, and the plot is owned by `id(p)`.

The webui's progress bar counts the renders (`state.job_count` is raised in `process`, before the
webui reads it), Interrupt and "stop generating" are checked before every render, a render cut short
by Interrupt (or Skip) is dropped (its picture is not the cell's; "stop generating" lets it finish),
and what was rendered is still drawn into a (partial) grid. Grids and the analyzer's bar chart are
saved like the webui saves grids and appended to the gallery.
"""
from __future__ import annotations

import copy
import logging
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Sequence

from ..arch.blocks import Architecture
from ..errors import ParseError
from ..xy import LoraSettings, run_analyzer, run_cells, xy_grids
from ..xy.prompt import PLACEHOLDER, count_placeholders
from ..xy.lbw_plot import (CELL_ATTR, XYZ_ATTR, Key, Mode, Override, Plot, PlotArgs, apply_override, build_plot,
                       infotext as plot_infotext, key_of, plotted_tags, resolve_value)

log = logging.getLogger("lib_merge")
PLOT_ATTR = "blockmerge_lbw_plot"  # on the user's p: the PlotJob its postprocess runs


@dataclass
class PlotJob:
    owner: int  # id(p): copies of p carry the attribute too, but never run it
    plot: Plot
    prompt: Any  # as typed, with lbw=XYZ (str, or a list from the API)
    hr_prompt: Any
    first_seed: int
    subseed: int | None
    outer_seeds: tuple[int, ...]  # seeds of the generation's own images that are plot renders


# ---- process(): what replaces lbw=XYZ in this render ---------------------------------------------
def _prompts_of(p: Any) -> list[str]:
    out: list[str] = []
    for name in ("all_prompts", "all_hr_prompts", "prompt", "hr_prompt"):
        v = getattr(p, name, None)
        out += [v] if isinstance(v, str) else [x for x in (v or []) if isinstance(x, str)]
    return out


def has_placeholder(p: Any) -> bool:
    return any(count_placeholders(x) for x in _prompts_of(p))


_PROMPT_FIELDS = ("prompt", "hr_prompt", "all_prompts", "all_hr_prompts", "main_prompt", "main_hr_prompt")
TYPED_ATTR = "blockmerge_lbw_typed"  # on p: its prompt fields as they were before `substitute`


def substitute(p: Any, settings: LoraSettings) -> None:
    """Put the render's weights where the prompts (as typed, expanded, hires) say `lbw=XYZ`; the
    fields as typed are kept on p for `restore_typed`."""
    def fix(x: Any) -> Any:
        return apply_override(x, settings) if isinstance(x, str) and count_placeholders(x) else x

    typed = getattr(p, TYPED_ATTR, None)
    if typed is None:
        setattr(p, TYPED_ATTR, {name: getattr(p, name) for name in _PROMPT_FIELDS if hasattr(p, name)})
    for name in _PROMPT_FIELDS:
        v = getattr(p, name, None)
        if isinstance(v, list):
            setattr(p, name, [fix(x) for x in v])
        elif isinstance(v, str):
            setattr(p, name, fix(v))


def restore_typed(p: Any) -> None:
    """After a render (the script's postprocess): the prompts as typed again, `lbw=XYZ` included.

    The images' own infotexts were written during the render, with the concrete weights; what reads
    p afterwards — the X/Y/Z script builds its grid's infotext from the first cell's p once
    process_images returns (A1111 1.10 scripts/xyz_grid.py) — gets the prompt the user typed, so
    pasting the grid's parameters back runs the plot again."""
    typed = getattr(p, TYPED_ATTR, None)
    if typed is None:
        return
    for name, value in typed.items():
        setattr(p, name, value)
    delattr(p, TYPED_ATTR)


def prepare(p: Any, enabled: bool, args: PlotArgs, arch: Architecture | None, presets: Any) -> str | None:
    """From the script's `process`, before the tags are checked: put this render's weights where
    `lbw=XYZ` is (ours, the X/Y/Z axis's, or, starting a plot, its base weights). Returns the
    elements-axis directives that become the `XYZ` elemental preset of this render, or None.
    A ParseError stops the job with its message."""
    override = getattr(p, CELL_ATTR, None)
    if isinstance(override, Override):  # one of our own cells
        substitute(p, override.settings)
        return override.settings.elements
    axis_value = getattr(p, XYZ_ATTR, None)
    if axis_value is not None:  # a cell of the webui's X/Y/Z plot with our axis
        if not has_placeholder(p):
            raise ParseError(f"the X/Y/Z plot's LoRA block weight axis has no LoRA to vary: no tag says lbw={PLACEHOLDER}",
                             f"tag the LoRA, e.g. <lora:mine:1:1:lbw={PLACEHOLDER}>")
        substitute(p, resolve_value(str(axis_value), _need_arch(arch), presets))
        return None
    if not has_placeholder(p):
        return None
    if args.mode is Mode.OFF:
        # an ordinary tag then: the preset XYZ (all ones, or the user's own); say how to get the plot
        if enabled and PLACEHOLDER not in (getattr(presets, "lbw", None) or {}) and hasattr(p, "comment"):
            p.comment(f"LoRA Block Weight: lbw={PLACEHOLDER} is every block at 1 here; choose XY plot or Effective "
                      "Block Analyzer in the LoRA Block Weight accordion to plot this LoRA")
        return None
    if not enabled:
        raise ParseError(f"the {args.mode.label} needs block weights, but they are switched off",
                         "tick 'Apply LoRA block weights' in the LoRA Block Weight accordion")
    selected = (getattr(p, "script_args", None) or [0])[0]
    if selected not in (0, None):
        raise ParseError(f"the {args.mode.label} cannot run while another script (such as the X/Y/Z plot) is "
                         "selected", "set Script to None, or use the X/Y/Z plot's LoRA block weight axis")
    _start(p, build_plot(args, _need_arch(arch), presets, _first(getattr(p, "prompt", ""))))
    return None


def _need_arch(arch: Architecture | None) -> Architecture:
    if arch is None:  # Flux: the plots read 61-slot lists (FLUXALL, D00-D18, S00-S37; xy/blocks.py)
        raise ParseError("block-weight plots need an SD1, SD2, SDXL or Flux model", "load an SD1/SD2/SDXL/Flux checkpoint")
    return arch


def _first(prompt: Any) -> str:
    return prompt if isinstance(prompt, str) else next((x for x in prompt or [] if isinstance(x, str)), "")


def _start(p: Any, plot: Plot) -> None:
    from modules import shared
    seeds = [int(s) for s in getattr(p, "all_seeds", None) or [getattr(p, "seed", 0)]]
    subseeds = getattr(p, "all_subseeds", None) or [getattr(p, "subseed", None)]
    reusable: Sequence[int] = ()
    if int(getattr(p, "batch_size", 1) or 1) == 1:  # a batch's images are not bitwise single renders
        n = int(getattr(p, "n_iter", 1) or 1)
        reusable = seeds[:n] if not getattr(p, "subseed_strength", 0) else seeds[:1]
    job = PlotJob(id(p), plot, getattr(p, "prompt", ""), getattr(p, "hr_prompt", None), seeds[0],
                  int(subseeds[0]) if subseeds and subseeds[0] is not None else None, tuple(reusable))
    substitute(p, plot.outer)
    setattr(p, PLOT_ATTR, job)
    extra = plot.extra_renders(job.first_seed, job.outer_seeds)
    state = shared.state
    # the webui sets job_count = n_iter only while it is still -1 (and doubles it for hires fix after
    # this hook), so the progress bar counts every render of the plot from the start
    state.job_count = (int(getattr(p, "n_iter", 1) or 1) if state.job_count == -1 else state.job_count) + extra


# ---- postprocess(): the other renders, the grids, the chart ---------------------------------------
def finish(p: Any, processed: Any) -> None:
    """From the script's `postprocess`: render the remaining cells, draw, save and show the grids."""
    from modules import shared
    job = getattr(p, PLOT_ATTR, None)
    if not isinstance(job, PlotJob) or job.owner != id(p):
        return
    setattr(p, PLOT_ATTR, None)  # one run per generation
    state = shared.state
    if _stopped(state):
        _comment(processed, f"{job.plot.mode.label}: stopped before the plot started")
        return
    # Skip pressed during the generation cut its image short: render the baseline again
    cache: dict[Key, Any] = {} if getattr(state, "skipped", False) else dict(_outer_images(job, processed))
    todo = sum(1 for k in job.plot.planned(job.first_seed) if k not in cache)
    renderer = CellRenderer(p, job, cache, todo)
    if job.plot.mode is Mode.ANALYZER:
        _finish_analyzer(p, processed, job, renderer)
    else:
        _finish_xy(p, processed, job, renderer)


def _stopped(state: Any) -> bool:
    return bool(getattr(state, "interrupted", False) or getattr(state, "stopping_generation", False))


def _reason(state: Any) -> str:
    if getattr(state, "interrupted", False):
        return "Interrupt"
    if getattr(state, "skipped", False):
        return "Skip"
    return "stop generating" if getattr(state, "stopping_generation", False) else "Interrupt"


def _outer_images(job: PlotJob, processed: Any) -> list[tuple[Key, Any]]:
    """The generation's own images that are plot renders (the plot's base weights at its seeds)."""
    images = list(getattr(processed, "images", None) or [])
    first = int(getattr(processed, "index_of_first_image", 0) or 0)
    out = []
    for k, seed in enumerate(job.outer_seeds):
        img = images[first + k] if first + k < len(images) else None
        if img is not None and hasattr(img, "size") and hasattr(img, "convert"):
            out.append((key_of(LoraSettings(job.plot.outer.weights, seed), seed), img))
    return out


class CellRenderer:
    """`render(settings)` for the library: one copy of `p` through `process_images`, each key once."""

    def __init__(self, p: Any, job: PlotJob, cache: dict[Key, Any], todo: int):
        self.p, self.job, self.cache, self.todo = p, job, cache, todo
        self.done = 0
        self.stopped_by: str | None = None

    def __call__(self, settings: LoraSettings) -> Any:
        from modules import processing, shared
        key = key_of(settings, self.job.first_seed)
        if key in self.cache:
            return self.cache[key]
        state = shared.state
        if _stopped(state):
            self.stopped_by = self.stopped_by or _reason(state)
            return None
        state.job = f"{self.job.plot.mode.label}: render {self.done + 1} of {self.todo}"
        pc = self._copy(settings, key[1])
        try:
            with closing(pc):
                res = processing.process_images(pc)
        except Exception as e:  # noqa: BLE001 - the webui's own errors; the plot stops with what it has
            log.exception("LoRA Block Weight plot: a render failed")
            self.stopped_by = f"a render failed: {e}"
            return None
        error = (getattr(pc, "extra_generation_params", None) or {}).get("LBW error")
        if error:
            self.stopped_by = f"LBW error: {error}"
            return None
        if getattr(state, "interrupted", False) or getattr(state, "skipped", False):
            self.stopped_by = self.stopped_by or _reason(state)
            return None  # sampling was cut short: the picture is not the cell's
        images = list(getattr(res, "images", None) or [])
        first = int(getattr(res, "index_of_first_image", 0) or 0)
        if len(images) <= first:
            self.stopped_by = "a render gave no image"
            return None
        self.done += 1
        self.cache[key] = images[first]
        return images[first]

    def _copy(self, settings: LoraSettings, seed: int) -> Any:
        """A shallow copy, as the webui's X/Y/Z plot makes them, with its own mutable fields."""
        p, job = self.p, self.job
        pc = copy.copy(p)
        pc.prompt = job.prompt
        if hasattr(p, "hr_prompt"):
            pc.hr_prompt = job.hr_prompt
        pc.seed = seed
        if job.subseed is not None:
            pc.subseed = job.subseed
        pc.n_iter, pc.batch_size = 1, 1
        pc.do_not_save_grid = True
        pc.extra_generation_params = dict(getattr(p, "extra_generation_params", None) or {})
        pc.extra_generation_params.pop("LBW error", None)
        pc.override_settings = dict(getattr(p, "override_settings", None) or {})
        if isinstance(getattr(p, "styles", None), list):
            pc.styles = list(p.styles)
        if isinstance(getattr(p, "comments", None), dict):
            pc.comments = {}
        setattr(pc, CELL_ATTR, Override(settings, job.plot.mode.label))
        setattr(pc, PLOT_ATTR, None)
        return pc


def _progress(state: Any) -> Any:
    def report(done: int, total: int, what: str) -> None:
        state.textinfo = f"LoRA Block Weight plot: {what}"
    return report


def _finish_analyzer(p: Any, processed: Any, job: PlotJob, renderer: CellRenderer) -> None:
    from modules import shared
    spec = job.plot.spec
    assert spec is not None
    result = run_analyzer(spec, renderer, first_seed=job.first_seed, should_stop=lambda: _stopped(shared.state),
                          progress=_progress(shared.state))
    status = _status(job, renderer, result.partial)
    extra = {"LBW plot status": status} if status else {}
    for s in result.seeds:
        _publish(p, processed, job, s.grid.image, s.seed, "lbw_analyzer", extra)
    if result.chart is not None:
        table = {"LBW plot ranking": ", ".join(f"{b.block} {b.percent:.1f}%" for b in result.ranking)}
        _publish(p, processed, job, result.chart.image, job.first_seed, "lbw_analyzer_chart", {**extra, **table})
    if status:
        _comment(processed, f"{job.plot.mode.label}: {status}")


def _finish_xy(p: Any, processed: Any, job: PlotJob, renderer: CellRenderer) -> None:
    from modules import shared
    plot = job.plot
    run = run_cells(plot.cells, renderer, should_stop=lambda: _stopped(shared.state), progress=_progress(shared.state))
    if not run.images:
        _comment(processed, f"{plot.mode.label}: {_status(job, renderer, True)}")
        return
    grids = xy_grids(*plot.axes, plot.cells, run.images, recipe=plotted_tags(_first(job.prompt)))
    status = _status(job, renderer, run.partial)
    extra = {"LBW plot status": status} if status else {}
    for g in grids:
        _publish(p, processed, job, g.image, job.first_seed, "lbw_xy_grid", extra)
    if status:
        _comment(processed, f"{plot.mode.label}: {status}")


def _status(job: PlotJob, renderer: CellRenderer, partial: bool) -> str:
    if not partial:
        return ""
    from modules import shared
    why = renderer.stopped_by or _reason(shared.state)
    return f"stopped ({why}) after {renderer.done} of {renderer.todo} renders; the grid is partial"


def _comment(processed: Any, text: str) -> None:
    log.info("%s", text)
    comments = getattr(processed, "comments", None)
    if isinstance(comments, str):
        processed.comments = comments + text + "\n"


def _publish(p: Any, processed: Any, job: PlotJob, image: Any, seed: int, basename: str, extra: dict) -> None:
    """Save like the webui saves grids, and append to the gallery with an infotext of its own."""
    from modules import images, shared
    opts = shared.opts
    info = _grid_infotext(p, processed, job, seed, extra)
    if getattr(opts, "grid_save", True):
        path = getattr(p, "outpath_grids", None) or getattr(opts, "outdir_grids", "") or \
            getattr(opts, "outdir_txt2img_grids", "")
        try:
            images.save_image(image, path, basename, seed=seed, prompt=_first(job.prompt),
                              extension=getattr(opts, "grid_format", "png"), info=info, grid=True, p=p)
        except Exception:  # noqa: BLE001 - a full disk must not lose the grid from the gallery
            log.exception("LoRA Block Weight plot: could not save %s", basename)
    processed.images.append(image)
    for name, value in (("infotexts", info), ("all_prompts", _first(job.prompt)), ("all_seeds", seed)):
        lst = getattr(processed, name, None)
        if isinstance(lst, list):
            lst.append(value)


def _grid_infotext(p: Any, processed: Any, job: PlotJob, seed: int, extra: dict) -> str:
    """The generation's infotext with the prompt as typed (`lbw=XYZ`) and the plot's settings, so
    pasting a grid brings the plot back."""
    from modules import processing
    pg = copy.copy(p)
    pg.extra_generation_params = {**(getattr(p, "extra_generation_params", None) or {}),
                                  **plot_infotext(job.plot.args), **extra}
    pg.extra_generation_params.pop("LBW error", None)
    pg.batch_size = 1
    prompt = _first(job.prompt)
    subseed = job.subseed if job.subseed is not None else 0
    try:
        return processing.create_infotext(pg, [prompt], [seed], [subseed])
    except Exception:  # noqa: BLE001 - an unusual p: the generation's own infotext, with ours added
        log.exception("LoRA Block Weight plot: could not build the grid infotext")
        base = getattr(processed, "info", "") or ""
        return base + "".join(f", {k}: {v}" for k, v in {**plot_infotext(job.plot.args), **extra}.items())


def elements_book(presets: Any, elements: str | None) -> Any:
    """The presets with the elemental preset XYZ set to this render's elements-axis directives.

    Set, not appended: the default `XYZ:::1` (every module at 1) would otherwise override the block
    weights the other axes give this render."""
    if not elements:
        return presets
    from types import MappingProxyType
    from ..lora.elemental import parse_rules
    from ..lora.presets import PresetBook
    lbwe = dict(presets.lbwe)
    lbwe[PLACEHOLDER] = parse_rules(elements, f"elements {elements!r}")
    return PresetBook(presets.lbw, MappingProxyType(lbwe))


__all__ = ["PLOT_ATTR", "PlotJob", "CellRenderer", "elements_book", "finish", "has_placeholder", "prepare",
           "substitute"]
