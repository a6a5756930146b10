"""LoRA tags and CLI specs: parsing, round trips, fuzzing, and every error case (REFERENCE §7)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_merge.errors import MergeError, ParseError
from lib_merge.lora.entries import Entry, Kind, fmt, parse_entry
from lib_merge.lora.presets import DEFAULT_BOOK
from lib_merge.lora.tag import LoraTag, format_tag, parse_prompt, parse_spec, parse_tag

ONES12 = ",".join(["1"] * 12)


def test_blog_example_sdxl_out01():
    t = parse_tag("<lora:original_lora:1:1:lbw=1,1,1,1,1,1,1,0.8,1,1,1,1>")
    assert t.name == "original_lora" and t.te == 1 and t.unet == 1
    assert isinstance(t.lbw, tuple) and len(t.lbw) == 12 and t.lbw[7] == Entry(Kind.NUMBER, 0.8)


@pytest.mark.parametrize("text,te,unet", [
    ("<lora:a>", 1.0, 1.0),
    ("<lora:a:0.7>", 0.7, 0.7),  # one multiplier serves both
    ("<lora:a:0.7:0.2>", 0.7, 0.2),
    ("<lora:a:te=0.3>", 0.3, 0.3),
    ("<lora:a:unet=0.4>", 1.0, 0.4),
    ("<lora:a:te=0.3:unet=0.4>", 0.3, 0.4),
    ("<lora:a:0.5:unet=-1>", 0.5, -1.0),
    ("<lyco:a:2>", 2.0, 2.0),
])
def test_multipliers(text, te, unet):
    t = parse_tag(text)
    assert (t.te, t.unet) == (te, unet)


def test_named_arguments():
    t = parse_tag("<lora:my lora:1:0.5:lbw=INS:lbwe=ATTNDEEPOFF:start=3:stop=20:x=0.25:seed=7:dyn=8>")
    assert t == LoraTag("my lora", 1.0, 0.5, "INS", "ATTNDEEPOFF", 3, 20, 0.25, 7, 8)


def test_step_range_is_start_and_stop():
    assert parse_tag("<lora:a:1:step=5-20>") == parse_tag("<lora:a:1:start=5:stop=20>")


def test_random_and_x_entries():
    t = parse_tag("<lora:a:1:1:lbw=R,U,X,X+0.2,X-0.3,1,1,1,1,1,1,1:x=0.5>")
    assert [str(e) for e in t.lbw[:5]] == ["R", "U", "X", "X+0.2", "X-0.3"]
    assert t.uses_random


def test_several_tags_in_one_prompt():
    got = parse_prompt("a cat, <lora:one:0.5>, <lora:two:1:1:lbw=OUTD> and <lyco:three:0.1:0.2>")
    assert [m.tag.name for m in got] == ["one", "two", "three"]
    assert got[1].tag.lbw == "OUTD"
    assert got[0].text == "<lora:one:0.5>" and got[0].start == 7


def test_spec_keeps_windows_drive_and_paths():
    t = parse_spec(r"C:\loras\x.safetensors:0.5:1:lbw=ALL")
    assert t.name == r"C:\loras\x.safetensors" and t.te == 0.5 and t.lbw == "ALL"
    assert parse_spec("/tmp/x.safetensors:0.7").unet == 0.7
    assert parse_spec("<lora:x:1>").name == "x"


def test_user_preset_names_are_accepted():
    from lib_merge.lora.presets import PresetBook
    book = PresetBook.load("MINE:" + ONES12)
    assert parse_tag("<lora:a:1:1:lbw=MINE>", book).lbw == "MINE"


# ---- errors: each names the tag and says what to do ------------------------------------------------

@pytest.mark.parametrize("text,needle", [
    ("<lora:n:1:1:lbw=ALLL>", "did you mean 'ALL'"),
    ("<lora:n:1:1:lbw=1,1,1,1,1>", "5 block weights"),
    ("<lora:n:1:1:lbw=1,1,1,a,1,1,1,1,1,1,1,1>", "entry 4 'a' is not a number"),
    ("<lora:n:1:1:lbw=1,1,1,,1,1,1,1,1,1,1,1>", "entry 4 is empty"),
    ("<lora:n:1:1:lbw=1>", "1 block weights"),
    ("<lora:n:1:1:start=10:stop=5>", "start=10 is not before stop=5"),
    ("<lora:n:1:1:start=5:stop=5>", "never be on"),
    ("<lora:n:1:1:step=9-3>", "start=9 is not before stop=3"),
    ("<lora:n:1:INS>", "write lbw=INS"),
    ("<lora:n:1:ALL>", "old form"),
    ("<lora:n:INS>", "write lbw=INS"),
    ("<lora:n:1:1,0,0>", "old form"),
    ("<lora:n:1:abc>", "UNET multiplier 'abc' is not a number"),
    ("<lora:n:x1>", "TE multiplier 'x1' is not a number"),
    ("<lora:n:1:1:lbww=ALL>", "did you mean 'lbw='"),
    ("<lora:n:1:1:lbw=ALL:lbw=INS>", "lbw= is given twice"),
    ("<lora:n:1:te=1>", "given twice"),
    ("<lora:n:1:1:lbw=>", "lbw= is empty"),
    ("<lora:n:1:1:lbwe=ATTNDEEP>", "did you mean 'ATTNDEEPON'"),
    ("<lora:n:1:1:lbw=X,1,1,1,1,1,1,1,1,1,1,1>", "no x= value"),
    ("<lora:n:1:1:step=5>", "needs the form A-B"),
    ("<lora:n:1:1:step=1-5:start=2>", "step= and start="),
    ("<lora:n:1:1:start=-1>", "not a whole number"),
    ("<lora:n:1:1:seed=1.5>", "not a whole number"),
    ("<lora:n:1:1:x=abc>", "x= 'abc' is not a number"),
    ("<lora::1>", "name is empty"),
    ("<lora:n:1:1:1:1>", "at most TE, UNET and dyn"),
    ("<lora:n:nan>", "not a number"),
    ("<lora:n:1e999>", "too large"),
])
def test_errors(text, needle):
    with pytest.raises(ParseError) as e:
        parse_tag(text)
    msg = str(e.value)
    assert needle in msg
    assert text in msg  # names the tag
    assert "Fix:" in msg


def test_prompt_error_names_tag_and_position():
    with pytest.raises(ParseError, match=r"<lora:b:1:1:lbw=NOPE> \(character 18 of the prompt\)"):
        parse_prompt("x <lora:a:1>, y, <lora:b:1:1:lbw=NOPE>")


def test_not_a_tag():
    with pytest.raises(ParseError, match="is not a LoRA tag"):
        parse_tag("lora:a:1")


# ---- round trips and fuzzing -------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
names = st.text(st.characters(blacklist_characters=":<>\n\r", blacklist_categories=("Cs", "Cc")), min_size=1,
                max_size=20).map(str.strip).filter(bool)
numbers = finite.map(lambda v: Entry(Kind.NUMBER, v))
entry = st.one_of(numbers, st.just(Entry(Kind.R)), st.just(Entry(Kind.U)),
                  finite.map(lambda v: Entry(Kind.X, v)))


@st.composite
def tags(draw):
    lbw = draw(st.one_of(st.none(), st.sampled_from(DEFAULT_BOOK.names()),
                         st.sampled_from([12, 17, 20, 26]).flatmap(lambda n: st.lists(entry, min_size=n, max_size=n)
                                                                  .map(tuple))))
    start = draw(st.one_of(st.none(), st.integers(0, 10 ** 6)))
    stop = draw(st.one_of(st.none(), st.integers(start + 1 if start is not None else 0, 10 ** 6 + 5)))
    needs_x = isinstance(lbw, tuple) and any(e.kind is Kind.X for e in lbw)
    x = draw(finite if needs_x else st.one_of(st.none(), finite))
    return LoraTag(draw(names), draw(finite), draw(finite), lbw,
                   draw(st.one_of(st.none(), st.sampled_from(sorted(DEFAULT_BOOK.lbwe)))), start, stop, x,
                   draw(st.one_of(st.none(), st.integers(0, 2 ** 63))), draw(st.one_of(st.none(), st.integers(1, 512))))


@settings(max_examples=150, deadline=None)
@given(tags())
def test_tag_round_trip(tag):
    assert parse_tag(format_tag(tag)) == tag
    assert parse_spec(format_tag(tag, brackets=False)) == tag


@settings(max_examples=300, deadline=None)
@given(finite)
def test_number_format_round_trip(v):
    assert float(fmt(v)) == v
    assert parse_entry(fmt(v), "t").value == v


@settings(max_examples=250, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_tag_body_never_crashes(body):
    try:
        parse_tag(f"<lora:{body}>")
    except ParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["n", "1", "0.5", "-2", "lbw=ALL", "lbw=1,0", "te=1", "unet=2", "start=3",
                                 "stop=2", "step=1-4", "x=1", "seed=5", "INS", "R", "lbwe=XYZ", "=", "", "lbw=X"]),
                max_size=6))
def test_fuzz_tag_items(items):
    text = "<lora:" + ":".join(["name", *items]) + ">"
    try:
        tag = parse_tag(text)
    except MergeError:
        return
    assert parse_tag(format_tag(tag)) == tag


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_prompt(prompt):
    try:
        for m in parse_prompt(prompt):
            assert prompt[m.start:m.end] == m.text
    except ParseError:
        pass
