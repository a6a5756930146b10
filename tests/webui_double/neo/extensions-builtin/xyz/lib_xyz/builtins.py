"""lib_xyz/builtins.py: `builtin_options`, the plot's axes (a few of them)."""
from .classes import AxisOption


def apply_field(field):
    def fun(p, x, xs):
        setattr(p, field, x)
    return fun


def format_value(p, opt, x):
    return round(x, 8) if type(x) is float else x


builtin_options = [
    AxisOption("Nothing", str, lambda p, x, xs: None, format_value=lambda p, opt, x: ""),
    AxisOption("Seed", int, apply_field("seed")),
    AxisOption("Steps", int, apply_field("steps")),
    AxisOption("CFG Scale", float, apply_field("cfg_scale")),
    AxisOption("Prompt S/R", str, lambda p, x, xs: setattr(p, "prompt", p.prompt.replace(xs[0], x)),
               format_value=format_value),
]
