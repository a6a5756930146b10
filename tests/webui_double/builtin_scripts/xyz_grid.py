"""scripts/xyz_grid.py (A1111 1.10 and Forge): the parts an extension meets, written from WEBUI.md §7.

- `AxisOption(label, type, apply, format_value, confirm, cost, choices, prepare)` and the module
  list `axis_options`, which `Script.ui()` reads (the type dropdowns index into it);
- `run()` parses each axis' text as the webui does: `prepare(text)` when the option has one, else a
  csv split; int and float axes expand ranges (`1-4`, `1-9 (+2)`, `0-1 [5]`); each value goes
  through `type`; `confirm(p, values)` is called with the plot's own `p`, before the first cell;
  seeds of -1 are fixed to random ones;
- the loop order follows the costs (the most expensive axis outermost, ties as in the webui);
- every cell: stop when interrupted, `pc = copy(p)` (shallow), `x.apply(pc, ...)`, `y.apply`,
  `z.apply`, `process_images(pc)` (an exception is reported, the cell stays empty);
- `SharedSettingsStackHelper` around the loops: its exit reloads the selected checkpoint
  (`reload_model_weights()`, a stub in Forge).
No grid is drawn: `processed.images` holds the cells' first images, X fastest, then Y, then Z
(`Script.order` lists the cells in the order they ran). The grid's infotext (`Script.grid_infotext`)
is made as the webui makes it (A1111 1.10 scripts/xyz_grid.py, the `cell` closure): right after the
first cell's process_images(pc) returns, `create_infotext(pc, pc.all_prompts, pc.all_seeds,
pc.all_subseeds)` with `Script`, `X Type` / `X Values` (and Y, Z) added to pc's extra parameters. `run()` has the webui's arguments.
Loaded by tests/webui_double/xyz.py as the webui loads it, as a module named "xyz_grid.py".
(webui_root/scripts/xyz_grid.py is a smaller double of the same script, without ranges and the
cost order; the two can become one.)
"""
import csv
import random
import re
from copy import copy
from io import StringIO
from itertools import chain

import numpy as np

from modules import errors, processing, scripts, sd_models, shared
from modules.processing import process_images


def apply_field(field):
    def fun(p, x, xs):
        setattr(p, field, x)
    return fun


def format_value_add_label(p, opt, x):
    if type(x) is float:
        x = round(x, 8)
    return f"{opt.label}: {x}"


def format_value(p, opt, x):
    if type(x) is float:
        x = round(x, 8)
    return x


def do_nothing(p, x, xs):
    pass


def format_nothing(p, opt, x):
    return ""


def csv_string_to_list_strip(data_str):
    return [v.strip() for v in chain.from_iterable(csv.reader(StringIO(data_str)))]


class AxisOption:
    def __init__(self, label, type, apply, format_value=format_value_add_label, confirm=None, cost=0.0, choices=None,
                 prepare=None):
        self.label = label
        self.type = type
        self.apply = apply
        self.format_value = format_value
        self.confirm = confirm
        self.cost = cost
        self.prepare = prepare
        self.choices = choices


class AxisOptionImg2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = True


class AxisOptionTxt2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = False


axis_options = [
    AxisOption("Nothing", str, do_nothing, format_value=format_nothing),
    AxisOption("Seed", int, apply_field("seed")),
    AxisOption("Steps", int, apply_field("steps")),
    AxisOption("CFG Scale", float, apply_field("cfg_scale")),
    AxisOption("Prompt S/R", str, lambda p, x, xs: setattr(p, "prompt", p.prompt.replace(xs[0], x)),
               format_value=format_value),
]

_NUM = r"[+-]?\s*\d+(?:\.\d*)?"
_STEP = re.compile(rf"\s*({_NUM})\s*-\s*({_NUM})(?:\s*\(([+-]\d+(?:\.\d*)?)\s*\))?\s*")
_COUNT = re.compile(rf"\s*({_NUM})\s*-\s*({_NUM})(?:\s*\[(\d+)\s*])?\s*")


def _expand(values, kind):
    """int: `a-b` and `a-b (+s)` include b, `a-b [n]` is n evenly spaced (truncated to int);
    float: `a-b (+s)` steps from a through b, `a-b [n]` is n evenly spaced."""
    out = []
    for val in values:
        m, mc = _STEP.fullmatch(val), _COUNT.fullmatch(val)
        if m is not None:
            a, b = kind(m.group(1).replace(" ", "")), kind(m.group(2).replace(" ", ""))
            s = kind(m.group(3)) if m.group(3) is not None else 1
            out += list(range(a, b + 1, s)) if kind is int else np.arange(a, b + s, s).tolist()
        elif mc is not None:
            a, b = kind(mc.group(1).replace(" ", "")), kind(mc.group(2).replace(" ", ""))
            n = int(mc.group(3)) if mc.group(3) is not None else 1
            out += [kind(v) for v in np.linspace(a, b, n).tolist()]
        else:
            out.append(val)
    return out


def _order(x_opt, y_opt, z_opt):
    """(first, second) axes of the nested loops: the costliest outermost; on ties Z, then Y."""
    first, second = "z", "y"
    if x_opt.cost > y_opt.cost and x_opt.cost > z_opt.cost:
        first, second = "x", ("y" if y_opt.cost > z_opt.cost else "z")
    elif y_opt.cost > x_opt.cost and y_opt.cost > z_opt.cost:
        first, second = "y", ("x" if x_opt.cost > z_opt.cost else "z")
    elif z_opt.cost > x_opt.cost and z_opt.cost > y_opt.cost:
        first, second = "z", ("x" if x_opt.cost > y_opt.cost else "y")
    return first, second


class SharedSettingsStackHelper:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        sd_models.reload_model_weights()


class Script(scripts.Script):
    def title(self):
        return "X/Y/Z plot"

    def ui(self, is_img2img):
        self.current_axis_options = [x for x in axis_options if type(x) is AxisOption or x.is_img2img == is_img2img]
        return []

    def run(self, p, x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type, z_values,
            z_values_dropdown, draw_legend=True, include_lone_images=False, include_sub_grids=False,
            no_fixed_seeds=False, margin_size=0, csv_mode=False, raw_mode=False):
        def process_axis(opt, vals, vals_dropdown):
            if opt.label == "Nothing":
                return [0]
            if opt.choices is not None and not csv_mode:
                valslist = vals_dropdown
            elif opt.prepare is not None:
                valslist = opt.prepare(vals)
            else:
                valslist = csv_string_to_list_strip(vals)
            if opt.type in (int, float):
                valslist = _expand(valslist, opt.type)
            valslist = [opt.type(x) for x in valslist]
            if opt.confirm:
                opt.confirm(p, valslist)
            return valslist

        opts_ = self.current_axis_options
        x_opt, y_opt, z_opt = opts_[x_type], opts_[y_type], opts_[z_type]
        xs = process_axis(x_opt, x_values, x_values_dropdown)
        ys = process_axis(y_opt, y_values, y_values_dropdown)
        zs = process_axis(z_opt, z_values, z_values_dropdown)
        if not no_fixed_seeds:
            def fix(opt, vals):
                return [random.randrange(4294967294) if opt.label == "Seed" and v == -1 else v for v in vals]
            xs, ys, zs = fix(x_opt, xs), fix(y_opt, ys), fix(z_opt, zs)
        first, second = _order(x_opt, y_opt, z_opt)
        self.order = []  # (ix, iy, iz) as the cells ran, for tests
        self.labels = ([x_opt.format_value(p, x_opt, x) for x in xs], [y_opt.format_value(p, y_opt, y) for y in ys],
                       [z_opt.format_value(p, z_opt, z) for z in zs])
        images = [None] * (len(xs) * len(ys) * len(zs))
        infotexts = [""] * len(images)
        shared.state.job_count = len(images) * p.n_iter
        self.grid_infotext = None

        def cell(ix, iy, iz):
            if shared.state.interrupted:
                return
            pc = copy(p)
            pc.styles = list(pc.styles or [])
            x_opt.apply(pc, xs[ix], xs)
            y_opt.apply(pc, ys[iy], ys)
            z_opt.apply(pc, zs[iz], zs)
            try:
                res = process_images(pc)
            except Exception as e:
                errors.display(e, "generating image for xyz plot")
                return
            self.order.append((ix, iy, iz))
            if self.grid_infotext is None and ix == 0 and iy == 0 and iz == 0:
                pc.extra_generation_params = copy(pc.extra_generation_params)
                pc.extra_generation_params["Script"] = self.title()
                for name, opt, text in (("X", x_opt, x_values), ("Y", y_opt, y_values), ("Z", z_opt, z_values)):
                    if opt.label != "Nothing":
                        pc.extra_generation_params[f"{name} Type"] = opt.label
                        pc.extra_generation_params[f"{name} Values"] = text
                self.grid_infotext = processing.create_infotext(pc, pc.all_prompts, pc.all_seeds, pc.all_subseeds)
            if res.images:
                images[ix + iy * len(xs) + iz * len(xs) * len(ys)] = res.images[0]
                infotexts[ix + iy * len(xs) + iz * len(xs) * len(ys)] = res.infotexts[0]

        ranges = {"x": range(len(xs)), "y": range(len(ys)), "z": range(len(zs))}
        third = ({"x", "y", "z"} - {first, second}).pop()
        with SharedSettingsStackHelper():
            for a in ranges[first]:
                for b in ranges[second]:
                    for c in ranges[third]:
                        at = {first: a, second: b, third: c}
                        cell(at["x"], at["y"], at["z"])
        self.values = (xs, ys, zs)
        out = processing.Processed(p, images)
        out.infotexts = infotexts
        return out
