"""The identity of a merged model that lives only in memory (Merge and load / generate).

Images made from it must not say they come from model A: they name the merge and carry its recipe,
so they can be reproduced. The hash is the first 10 hex digits of the sha256 of the recipe JSON as
saved files carry it (`sd_merge_recipe`: the settings plus the inputs' sha256), so the same recipe
on the same inputs always gives the same hash. INFOTEXT_KEY holds that JSON in the image's
parameters; `recipe_from_infotext` reads it back from pasted parameters.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import RecipeError

INFOTEXT_KEY = "BlockMerge recipe"


@dataclass(frozen=True)
class Identity:
    name: str  # "Model" in the infotext
    hash: str  # "Model hash": 10 hex digits
    recipe: str  # the compact recipe JSON (`sd_merge_recipe`)

    def infotext(self) -> dict[str, str]:
        return {INFOTEXT_KEY: self.recipe}


def identity_of(metadata: Mapping[str, str], name: str) -> Identity:
    recipe = metadata.get("sd_merge_recipe") or "{}"
    return Identity(name, hashlib.sha256(recipe.encode("utf-8")).hexdigest()[:10], recipe)


_KEY = re.compile(re.escape(INFOTEXT_KEY) + r":\s*")


def recipe_from_infotext(text: str) -> dict[str, Any]:
    """The recipe an image's parameters carry under INFOTEXT_KEY, as a dict.

    The webui writes a value holding a comma or colon as a JSON string (infotext_utils.quote), so the
    value is either that string or the JSON object itself."""
    m = _KEY.search(text or "")
    if m is None:
        raise RecipeError(f"these parameters have no '{INFOTEXT_KEY}'",
                          "paste the parameters of an image made from a model merged in memory by BlockMerge")
    dec = json.JSONDecoder()
    try:
        value, _ = dec.raw_decode(text, m.end())
        if isinstance(value, str):
            value = json.loads(value)
    except ValueError:
        raise RecipeError(f"the '{INFOTEXT_KEY}' in these parameters is not valid JSON",
                          "paste the image's parameters unchanged") from None
    if not isinstance(value, dict):
        raise RecipeError(f"the '{INFOTEXT_KEY}' in these parameters is not a recipe",
                          "paste the image's parameters unchanged")
    return value
