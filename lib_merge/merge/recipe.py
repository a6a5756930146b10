"""The recipe: every setting of a merge, frozen, serialisable, enough to replay it bit for bit."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from ..errors import RecipeError
from ..methods.finite import check_multiplier

DTYPES = ("keep", "fp16", "bf16", "fp32", "fp8_e4m3fn", "fp8_e5m2")
check_weight = check_multiplier  # one rule for merge weights and LoRA multipliers


@dataclass(frozen=True)
class Recipe:
    models: tuple[str, ...]  # paths of A, B, C (B and C as the mode needs)
    mode: str | None = None  # None: weight_sum, or the mode the calc mode works with
    calc: str = "normal"
    alpha: float | None = None  # None: 0.5 (1.0 for calc self)
    beta: float = 0.25
    gamma: float = 0.3
    alpha_blocks: str = ""  # MBW weight string or preset name, as typed
    beta_blocks: str = ""
    elemental: str = ""
    adjust: str = ""
    include: str = ""
    exclude: str = ""
    merge_vae: bool = False
    dtype: str = "keep"
    seed: int | None = None  # for R/U/X tokens; drawn and recorded when needed and missing
    x_range: tuple[float, float] = (0.0, 1.0)  # X tokens draw uniformly from this range
    prune: bool = False  # keep only UNet, text encoders and VAE
    device: str = "cpu"
    presets_file: str = ""  # where user presets came from (not recorded: they are expanded)
    key_map: str = ""  # a key map file (pruned SDXL): B and C are read through it
    allow_extreme: bool = False  # weights outside [-10, 10] (recorded only when set)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise RecipeError(f"unknown dtype {self.dtype!r}", f"use one of {', '.join(DTYPES)}")
        if not self.models:
            raise RecipeError("no models given", "give model A (and B, C as the mode needs)")
        if len(self.models) > 3:
            raise RecipeError(f"{len(self.models)} models given, at most 3 (A, B, C)", "drop the extra models")
        for name in ("alpha", "beta"):
            v = getattr(self, name)
            if v is not None:
                check_weight(float(v), f"--{name}", self.allow_extreme)
        if not math.isfinite(float(self.gamma)):
            raise RecipeError(f"--gamma is {self.gamma}, not a finite number", "give a number such as 0.3")
        if not all(math.isfinite(float(x)) for x in self.x_range):
            raise RecipeError(f"--x-range {self.x_range} is not two finite numbers", "write LOW,HIGH such as 0,1")

    @property
    def effective_alpha(self) -> float:
        if self.alpha is not None:
            return self.alpha
        return 1.0 if self.calc == "self" else 0.5

    def replace(self, **kw: Any) -> "Recipe":
        return dataclasses.replace(self, **kw)

    # --- serialisation: what goes into the file's metadata (models by name; hashes beside them)
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["x_range"] = list(self.x_range)
        for k in ("device", "presets_file"):
            d.pop(k)
        if not self.allow_extreme:
            d.pop("allow_extreme")
        if not self.key_map:
            d.pop("key_map")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recipe":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["models"] = tuple(kw.get("models", ()))
        if "x_range" in kw:
            kw["x_range"] = tuple(kw["x_range"])
        return cls(**kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        return cls.from_dict(json.loads(text))
