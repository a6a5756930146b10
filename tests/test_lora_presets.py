"""LoRA presets (defaults, SDXL meanings, the user's files), elemental presets, layouts, resolution."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_merge.arch.blocks import SD1, SD2, SDXL
from lib_merge.errors import ParseError
from lib_merge.lora.elemental import parse_lbwe_text, parse_rules
from lib_merge.lora.layouts import LAYOUTS, expand
from lib_merge.lora.presets import DEFAULT_BOOK, PresetBook, format_lbw_presets, known_form, parse_lbw_presets
from lib_merge.lora.ratios import resolve
from lib_merge.lora.tag import parse_tag

# The 17 values users know (REFERENCE §7), typed out independently of the library's tables.
KNOWN17 = {
    "NONE": "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0",
    "ALL": "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
    "INS": "1,1,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0",
    "IND": "1,0,0,0,1,1,1,0,0,0,0,0,0,0,0,0,0",
    "INALL": "1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0",
    "MIDD": "1,0,0,0,1,1,1,1,1,1,1,1,0,0,0,0,0",
    "OUTD": "1,0,0,0,0,0,0,0,1,1,1,1,0,0,0,0,0",
    "OUTS": "1,0,0,0,0,0,0,0,0,0,0,0,1,1,1,1,1",
    "OUTALL": "1,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1",
    "ALL0.5": ",".join(["0.5"] * 17),
}
# SDXL meanings (12 values: BASE, IN04, IN05, IN07, IN08, M00, OUT00..OUT05), chosen by intent.
SDXL12 = {
    "NONE": "0,0,0,0,0,0,0,0,0,0,0,0",
    "ALL": "1,1,1,1,1,1,1,1,1,1,1,1",
    "INS": "1,1,1,0,0,0,0,0,0,0,0,0",  # the shallow input attention blocks
    "IND": "1,0,0,1,1,0,0,0,0,0,0,0",  # the deep ones
    "INALL": "1,1,1,1,1,0,0,0,0,0,0,0",
    "MIDD": "1,0,0,1,1,1,1,1,1,0,0,0",  # deep input, middle, deep output
    "OUTD": "1,0,0,0,0,0,1,1,1,0,0,0",
    "OUTS": "1,0,0,0,0,0,0,0,0,1,1,1",
    "OUTALL": "1,0,0,0,0,0,1,1,1,1,1,1",
    "ALL0.5": ",".join(["0.5"] * 12),
}


def floats(text):
    return tuple(float(v) for v in text.split(","))


@pytest.mark.parametrize("name", list(KNOWN17))
def test_defaults_show_the_17_values_users_know(name):
    assert known_form(name, 17) == floats(KNOWN17[name])


@pytest.mark.parametrize("name", list(SDXL12))
def test_defaults_have_sdxl_meanings(name):
    assert known_form(name, 12) == floats(SDXL12[name])
    r = resolve(parse_tag(f"<lora:a:1:1:lbw={name}>"), SDXL)
    layout = LAYOUTS[12]
    assert tuple(r.blocks[b] for b in layout.blocks) == floats(SDXL12[name])


def test_17_value_preset_on_sdxl_does_what_its_name_says():
    r = resolve(parse_tag("<lora:a:1:1:lbw=OUTD>"), SDXL).blocks
    assert r["OUT00"] == r["OUT01"] == r["OUT02"] == 1 and r["OUT03"] == 0  # deep output, not SD1's OUT03..06
    assert r["IN07"] == 0 and r["M00"] == 0 and r["BASE"] == 1


def test_defaults_on_lycoris_blocks_follow_intent():
    b = resolve(parse_tag("<lora:a:1:1:lbw=ALL>"), SD1).blocks
    assert set(b.values()) == {1.0}  # conv-only blocks (IN00, IN03, OUT00..02) are on too
    b = resolve(parse_tag("<lora:a:1:1:lbw=INS>"), SD1).blocks
    assert [b[k] for k in ("IN00", "IN03", "IN05", "OUT11")] == [1, 1, 0, 0]


@pytest.mark.parametrize("arch,count", [(SD1, 17), (SD1, 26), (SD2, 17), (SDXL, 12), (SDXL, 20), (SDXL, 26)])
def test_explicit_lists_expand_by_name_with_unnamed_slots_zero(arch, count):
    values = [round(0.01 * (i + 1), 2) for i in range(count)]
    full = expand(values, arch, "t")
    assert set(full) == set(arch.blocks)
    for block, v in zip(LAYOUTS[count].blocks, values):
        if block in arch.blocks:
            assert full[block] == v
    named = set(LAYOUTS[count].blocks)
    assert all(full[b] == 0 for b in arch.blocks if b not in named)


def test_26_on_sdxl_drops_the_missing_blocks():
    values = list(range(26))
    full = expand(values, SDXL, "t")
    assert full["M00"] == 13 and full["OUT00"] == 14 and full["OUT08"] == 22 and full["IN08"] == 9


@pytest.mark.parametrize("arch,count", [(SD1, 12), (SD1, 20), (SDXL, 17), (SD2, 12)])
def test_layout_of_the_other_family_is_refused(arch, count):
    with pytest.raises(ParseError, match=f"{count} values is the .* layout"):
        resolve(parse_tag("<lora:a:1:1:lbw=" + ",".join(["1"] * count) + ">"), arch)


def test_user_presets_file():
    text = """# my presets
MINE:1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0.5   # a trailing comment
XLONLY:1,1,1,1,1,1,1,0.8,1,1,1,1
TABBED\t0,1,0,1,0,1,0,1,0,1,0,1,0,1,0,1,0
MINE:1,1,1,1,1,1,1,1,1,1,1,1

RND:R,U,1,1,1,1,1,1,1,1,1,1
"""
    book = PresetBook.load(text)
    assert set(book.lbw) == {"MINE", "XLONLY", "TABBED", "RND"}
    assert len(book.lbw["MINE"]) == 2  # one line per family is allowed
    sd = resolve(parse_tag("<lora:a:1:1:lbw=MINE>", book), SD1, book).blocks
    xl = resolve(parse_tag("<lora:a:1:1:lbw=MINE>", book), SDXL, book).blocks
    assert sd["OUT11"] == 0.5 and sd["IN01"] == 0
    assert all(xl[b] == 1 for b in LAYOUTS[12].blocks) and xl["IN00"] == 0  # a user's list: unnamed slots 0
    with pytest.raises(ParseError, match="preset 'XLONLY' has 12 values, which do not fit an SD1.x LoRA"):
        resolve(parse_tag("<lora:a:1:1:lbw=XLONLY>", book), SD1, book)
    assert resolve(parse_tag("<lora:a:1:1:lbw=TABBED>", book), SD1, book).blocks["IN01"] == 1


def test_user_file_copying_a_default_keeps_the_default():
    book = PresetBook.load("ALL:" + KNOWN17["ALL"] + "\nOUTD:" + KNOWN17["OUTD"] + "\n")
    assert book.lbw == {}
    assert resolve(parse_tag("<lora:a:1:1:lbw=OUTD>"), SDXL, book).blocks["OUT00"] == 1


@pytest.mark.parametrize("text,needle", [
    ("BAD:1,2,3", "3 block weights"),
    ("BAD:1,y,1,1,1,1,1,1,1,1,1,1", "entry 2 'y' is not a number"),
    ("no separator here", "is not a NAME:values line"),
    (":1,1,1,1,1,1,1,1,1,1,1,1", "is not a NAME:values line"),
])
def test_user_file_errors_name_the_line(text, needle):
    with pytest.raises(ParseError, match="mine.txt:2") as e:
        parse_lbw_presets("# ok\n" + text, "mine.txt")
    assert needle in str(e.value)


def test_presets_file_round_trip():
    book = PresetBook.load("MINE:R,1,1,1,1,1,1,1,1,1,1,0.25\n")
    again = PresetBook.load(format_lbw_presets(book))
    assert again.lbw == book.lbw


def test_elemental_defaults_and_user_file():
    assert set(DEFAULT_BOOK.lbwe) == {"ATTNDEEPON", "ATTNDEEPOFF", "PROJDEEPOFF", "XYZ"}
    book = PresetBook.load(lbwe_text="""# mine
ATTNDEEPON:IN05-OUT05:attn:1,IN05-OUT05:attn:12

OFFMID:M00::0
BASE:NOT attn:0.5
""")
    assert len(book.lbwe["ATTNDEEPON"]) == 2
    r1, r2 = book.lbwe["OFFMID"]
    assert r1.matches("M00", ["x"]) and not r1.matches("IN05", ["x"])
    assert r2.matches("BASE", ["mlp_fc1"]) and not r2.matches("BASE", ["self_attn_q_proj"])


def test_elemental_block_ranges_either_order_and_not():
    (r,) = parse_rules("OUT05-IN05:attn2:0.5", "t")
    assert r.blocks == frozenset(["IN05", "IN06", "IN07", "IN08", "IN09", "IN10", "IN11", "M00",
                                  "OUT00", "OUT01", "OUT02", "OUT03", "OUT04", "OUT05"])
    (n,) = parse_rules("NOT IN00-IN11:NOT attn:0", "t")
    assert n.matches("OUT01", ["ff_net_2"]) and not n.matches("IN01", ["ff_net_2"])
    assert not n.matches("OUT01", ["attn1_to_q"])


@pytest.mark.parametrize("text,needle", [
    ("IN05-OUT55:attn:0", "unknown block 'OUT55' (did you mean 'OUT05'?)"),
    ("IN05:attn", "exactly two colons"),
    ("IN05:attn:zero", "not a number"),
    ("NOT:attn:0", "NOT with no blocks"),
])
def test_elemental_errors(text, needle):
    with pytest.raises(ParseError) as e:
        parse_rules(text, "t")
    assert needle in str(e.value)


def test_elemental_file_needs_names():
    with pytest.raises(ParseError, match="has no NAME"):
        parse_lbwe_text("IN05 attn 1", "f")


def test_random_entries_replay_from_the_recorded_seed():
    tag = parse_tag("<lora:a:1:1:lbw=R,U,R,U,R,U,R,U,R,U,R,U>")
    first = resolve(tag, SDXL)
    assert first.seed is not None and first.tag.seed == first.seed
    again = resolve(first.tag, SDXL)  # the tag written into metadata / infotext
    assert again.blocks == first.blocks
    assert resolve(tag, SDXL, seed=first.seed).blocks == first.blocks
    assert all(0 <= first.blocks[b] <= 1 for b in ("BASE", "IN05", "IN08", "OUT00", "OUT02", "OUT04"))
    assert all(-0.5 <= first.blocks[b] <= 1.5 for b in ("IN04", "IN07", "M00", "OUT01", "OUT03", "OUT05"))
    assert resolve(tag, SDXL, seed=1).blocks != resolve(tag, SDXL, seed=2).blocks


def test_x_values():
    tag = parse_tag("<lora:a:1:1:lbw=X,X+0.25,X-0.5,1,1,1,1,1,1,1,1,1:x=0.5>")
    b = resolve(tag, SDXL).blocks
    assert (b["BASE"], b["IN04"], b["IN05"]) == (0.5, 0.75, 0.0)
    assert resolve(tag, SDXL).seed is None


def test_elemental_ratio_replaces_block_ratio():
    book = PresetBook.load(lbwe_text="E:OUT01:attn2:0.25\n\nF:::0")
    r = resolve(parse_tag("<lora:a:1:2:lbw=1,1,1,1,1,1,1,0.8,1,1,1,1:lbwe=E>", book), SDXL, book)
    assert r.strength("OUT01", False, ["output_blocks_1_1_transformer_blocks_0_attn2_to_k"]) == 0.5
    assert r.strength("OUT01", False, ["output_blocks_1_1_transformer_blocks_0_attn1_to_k"]) == 1.6
    assert r.strength("OUT00", False, ["output_blocks_0_1_transformer_blocks_0_attn2_to_k"]) == 2.0
    off = resolve(parse_tag("<lora:a:1:1:lbwe=F>", book), SDXL, book)
    assert off.strength("BASE", True, ["x"]) == 0 and off.strength(None, False, ["x"]) == 0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_fuzz_presets_file(text):
    try:
        parse_lbw_presets(text, "f")
    except ParseError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_fuzz_elemental_file(text):
    try:
        parse_lbwe_text(text, "f")
    except ParseError:
        pass
