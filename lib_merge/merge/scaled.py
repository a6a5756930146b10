"""fp8 "scaled" checkpoints: per-tensor scales beside fp8 weights, de-scaled on read, re-scaled on write.

Two layouts are understood, both ComfyUI's (read in its source; cited in tests/test_flux_scaled.py):
- legacy: a marker tensor `scaled_fp8` (under the diffusion model's prefix; its dtype is the fp8 type)
  and, per fp8 Linear weight `X.weight`, a scalar `X.scale_weight` (+ an optional `X.scale_input`);
- mixed precision: per layer `X.weight_scale` (scalar), `X.comfy_quant` (a uint8 JSON tensor naming the
  format) and an optional `X.input_scale`.
The real weight is `fp8 * scale`. A merge reads every input de-scaled (float32). When the output is
scaled too (model A is scaled and the output keeps its fp8 type) each merged weight gets a new scale,
amax / fp8_max (as Comfy's quantize does), and A's markers and input scales are kept; any other output
dtype writes plain de-scaled weights and drops the scale keys. Anything else with scale keys (NVFP4's
`weight_scale_2`, per-row or per-block scales, scales on non-fp8 weights) is refused naming it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..errors import ArchitectureError
from ..io.safetensors_io import TensorInfo

SCALE_SUFFIXES = (".scale_weight", ".weight_scale")  # legacy, mixed precision
EXTRA_SUFFIXES = (".scale_input", ".input_scale", ".comfy_quant")
FP8 = ("F8_E4M3", "F8_E5M2")
FIX = "merge the bf16/fp16 or plain fp8 (float8_e4m3fn/e5m2) files instead"


@dataclass(frozen=True)
class ScaledLayout:
    scale_of: dict[str, str]  # fp8 weight key -> its scale key
    extras: frozenset[str]  # the marker, input scales, comfy_quant tensors: copied (scaled output) or dropped
    fp8: str  # the weights' fp8 dtype (safetensors name)
    kind: str = "legacy"  # or "mixed precision"
    scale_keys: frozenset[str] = field(default=frozenset())

    @property
    def label(self) -> str:
        return f"fp8 scaled ({self.kind}, {self.fp8})"


def scaled_layout(header: Mapping[str, TensorInfo], source: str) -> ScaledLayout | None:
    """The scaled-fp8 layout of a file from its header, None for a file without scale keys.
    Raises ArchitectureError (one line naming the format) for a scaled format that is not understood."""
    scale_of: dict[str, str] = {}
    extras: set[str] = set()
    kinds: set[str] = set()
    for key, info in header.items():
        if key.endswith(".weight_scale_2"):
            raise ArchitectureError(f"{source} is an NVFP4 (Comfy mixed precision) model (key {key!r}), which "
                                    "cannot be merged", FIX)
        if key == "scaled_fp8" or key.endswith(".scaled_fp8"):
            extras.add(key)
            kinds.add("legacy")
            continue
        if key.endswith(EXTRA_SUFFIXES):
            extras.add(key)
            continue
        suffix = next((s for s in SCALE_SUFFIXES if key.endswith(s)), None)
        if suffix is None:
            continue
        weight = key[:-len(suffix)] + ".weight"
        w = header.get(weight)
        if w is None:
            raise ArchitectureError(f"{source} has the scale {key!r} but no weight {weight!r} (an fp8 scaled "
                                    "format not understood)", FIX)
        if w.dtype not in FP8:
            raise ArchitectureError(f"{source} is a quantised model with scaled {w.dtype} weights (key {key!r}), "
                                    "which cannot be merged", FIX)
        n = 1
        for d in info.shape:
            n *= d
        if n != 1:
            raise ArchitectureError(f"{source} is an fp8 scaled model with per-row/per-block scales (key {key!r}, "
                                    f"shape {list(info.shape)}), which cannot be merged", FIX)
        scale_of[weight] = key
        kinds.add("legacy" if suffix == ".scale_weight" else "mixed precision")
    if not scale_of:
        if any(k.endswith(".comfy_quant") for k in extras):
            raise ArchitectureError(f"{source} is a Comfy mixed-precision model without per-tensor fp8 scales, "
                                    "which cannot be merged", FIX)
        return None
    fp8s = {header[w].dtype for w in scale_of}
    if len(fp8s) > 1 or len(kinds) > 1:
        raise ArchitectureError(f"{source} mixes fp8 scaled formats ({', '.join(sorted(fp8s | kinds))})", FIX)
    return ScaledLayout(scale_of, frozenset(extras), fp8s.pop(), kinds.pop(), frozenset(scale_of.values()))


def read_scales(layouts: list[ScaledLayout | None], sources) -> list[dict[str, float]]:
    """{scale key: value} of each input (scalars: a few bytes each)."""
    out: list[dict[str, float]] = []
    for lay, src in zip(layouts, sources):
        vals: dict[str, float] = {}
        if lay is not None:
            for key in lay.scale_keys:
                vals[key] = float(src.get(key).float().reshape(-1)[0])
        out.append(vals)
    return out


def descale(t, key: str | None, values: dict[str, float]):
    """A tensor as float32, times its scale when `key` names one."""
    t = t.float()
    return t * values[key] if key else t
