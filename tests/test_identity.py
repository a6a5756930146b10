"""The identity of a merge loaded in memory: a stable hash of its recipe, and the recipe read back
from an image's parameters as the webui writes them."""
from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lib_merge.errors import RecipeError
from lib_merge.merge.identity import INFOTEXT_KEY, identity_of, recipe_from_infotext

RECIPE = json.dumps({"type": "blockmerge", "kind": "merge", "mode": "weight_sum", "alpha": 0.3,
                     "elemental": "OUT05:attn1:0.5, IN04::0", "model_hashes": ["ab" * 32, "cd" * 32]},
                    sort_keys=True, separators=(",", ":"))


def test_the_hash_is_the_recipes_sha256_head():
    ident = identity_of({"sd_merge_recipe": RECIPE}, "mix")
    assert ident.hash == hashlib.sha256(RECIPE.encode()).hexdigest()[:10] and ident.name == "mix"
    assert ident.infotext() == {INFOTEXT_KEY: RECIPE}
    other = RECIPE.replace('"alpha":0.3', '"alpha":0.4')
    assert identity_of({"sd_merge_recipe": other}, "mix").hash != ident.hash


@pytest.mark.parametrize("value", [json.dumps(RECIPE), RECIPE])
def test_the_recipe_comes_back_quoted_or_raw(value):
    text = f"a cat, <lora:x:1>\nNegative prompt: ugly\nSteps: 2, Model: mix, {INFOTEXT_KEY}: {value}, Version: 1.10.1"
    assert recipe_from_infotext(text) == json.loads(RECIPE)


@pytest.mark.parametrize("text,says", [
    ("Steps: 2, Model: A", "no 'BlockMerge recipe'"),
    (f"Steps: 2, {INFOTEXT_KEY}: {{not json", "not valid JSON"),
    (f'Steps: 2, {INFOTEXT_KEY}: "[1, 2]"', "not a recipe"),
])
def test_bad_parameters_say_what_is_wrong(text, says):
    with pytest.raises(RecipeError, match=says):
        recipe_from_infotext(text)


@given(st.text(max_size=200))
def test_any_text_gives_a_recipe_or_a_recipe_error(text):
    try:
        assert isinstance(recipe_from_infotext(text), dict)
    except RecipeError:
        pass
