"""Pieces of lib_merge/webui that need no webui: which tags are ours, step counting, presets files."""
from __future__ import annotations

import types

import pytest

from lib_merge.errors import MergeError, ParseError
from lib_merge.webui import lbw_tags
from lib_merge.webui.lbw_files import PresetFiles, check_tag
from lib_merge.webui.lbw_runtime import current_step
from lib_merge.lora.presets import DEFAULT_BOOK


@pytest.mark.parametrize("items,ours", [
    (["x", "1"], False), (["x", "0.5", "1", "dyn=4"], False), (["x", "1", "te=0.5"], False),
    (["x", "1", "1", "lbw=ALL"], True), (["x", "lbwe=ATTNDEEPOFF"], True), (["x", "1", "STOP=5"], True),
    (["x", "1", "INS"], True), (["x", "1", "1,0,0,1"], True), (["x", "1", "1", "foo=bar"], False),
    (["x", "1", "a=b=c"], True),  # two '=' make a positional for the webui, and not a number
])
def test_which_tags_are_ours(items, ours):
    assert lbw_tags.is_ours(items) is ours


def test_tags_in_prompts_are_found_once_the_webui_way():
    found = lbw_tags.tags_in_prompts(["a <lora:x:1:1:lbw=ALL> b <lora:y:1>", "<lora:x:1:1:lbw=ALL>", "<hypernet:h:1:lbw=1>"])
    assert found == ["<lora:x:1:1:lbw=ALL>"]


def test_uses_from_network_data_keep_order_and_name_the_bad_tag():
    p = types.SimpleNamespace
    data = {"lora": [p(items=["b", "1", "1", "lbw=OUTD"]), p(items=["plain", "1"]), p(items=["a", "0.5", "stop=3"])]}
    uses = lbw_tags.uses_from_network_data(data, DEFAULT_BOOK)
    assert [u.name for u in uses] == ["b", "a"] and uses[1].tag.stop == 3 and uses[1].scheduled
    assert uses[1].unet_on(3) and not uses[1].unet_on(4) and uses[1].te_on
    with pytest.raises(ParseError, match=r"<lora:c:1:1:lbw=WRONG>.*unknown preset"):
        lbw_tags.uses_from_network_data({"lyco": [p(items=["c", "1", "1", "lbw=WRONG"])]}, DEFAULT_BOOK)


def test_validate_refuses_models_without_blocks():
    with pytest.raises(ParseError, match="need an SD1, SD2, SDXL or Flux model"):
        lbw_tags.validate(["<lora:x:1:1:lbw=ALL>"], None, DEFAULT_BOOK)


def _params(k, steps, total, sampling_step=0):
    d = types.SimpleNamespace(step=k, steps=steps, total_steps=total)
    return types.SimpleNamespace(denoiser=d, sampling_step=sampling_step)


def test_current_step_counts_from_one_per_step_for_any_sampler():
    assert [current_step(_params(k, 5, 5)) for k in range(5)] == [1, 2, 3, 4, 5]
    # second order: two calls per step (the last step one); total_steps as each webui computes it
    for total in (10, 9):
        assert [current_step(_params(k, 5, total)) for k in range(9)] == [1, 1, 2, 2, 3, 3, 4, 4, 5]
    # without the denoiser's counters: the progress bar's step
    assert current_step(types.SimpleNamespace(denoiser=None, sampling_step=3)) == 4


def test_presets_files_are_checked_before_they_are_written(tmp_path):
    lbw, lbwe = tmp_path / "d" / "lbw.txt", tmp_path / "d" / "lbwe.txt"
    files = PresetFiles(lambda: str(lbw), lambda: str(lbwe))
    assert "NONE:0,0,0" in files.read_lbw() and "ATTNDEEPOFF" in files.read_lbwe()  # defaults before any save
    with pytest.raises(ParseError, match="3 block weights"):
        files.save_lbw("BAD:1,2,3\n")
    assert not lbw.exists()
    assert "Saved" in files.save_lbw("MINE:1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0")
    assert lbw.read_text().endswith("\n") and "MINE" in files.book().names()
    key = files.book_key()
    files.save_lbwe("MY:IN05:attn:0.5\n")
    assert files.book_key() != key and files.book().elemental("MY", "t")


def test_check_tag_reports_every_block():
    out = check_tag("<lora:x:0.5:2:lbw=1,0,0,0,0,0,0,0,0,0,0,1>", "sdxl", DEFAULT_BOOK)
    assert out["blocks"]["BASE"] == 1 and out["blocks"]["OUT05"] == 1 and out["strengths"]["OUT05"] == 2
    assert out["strengths"]["BASE"] == 0.5 and out["layouts"]["20"][0] == 1
    with pytest.raises(MergeError, match="unknown architecture"):
        check_tag("<lora:x:1>", "flux", DEFAULT_BOOK)


def test_pasted_presets_go_inline_where_this_machine_differs():
    from lib_merge.lora.presets import PresetBook
    book = PresetBook.load("MINE:1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0\n")
    recorded = "MINE=1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1; THEIRS=0,1,1,1,1,1,1,1,1,1,1,1; INS=1,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0"
    prompt = "a <lora:x:1:1:lbw=MINE> b <lora:y:1:1:lbw=THEIRS:stop=3> <lora:z:1:1:lbw=INS> <lora:w:1:1:lbw=MINE2>"
    out = lbw_tags.inline_presets(prompt, recorded, book)
    assert out == ("a <lora:x:1:1:lbw=1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1> b <lora:y:1:1:lbw=0,1,1,1,1,1,1,1,1,1,1,1:stop=3> "
                   "<lora:z:1:1:lbw=INS> <lora:w:1:1:lbw=MINE2>")
