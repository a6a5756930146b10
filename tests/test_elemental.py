"""Elemental merge lines and include/exclude selections (REFERENCE §4).

Keys are real checkpoint key names. The property tests build entries from parts (blocks, ranges,
NOT, elements, ratio) and check the parsed rules against the reference's semantics written out
again in `expected_ratio`, not against the library's own matcher.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_merge.arch import SD1, SDXL
from lib_merge.arch import layouts as L
from lib_merge.merge.elemental import Elemental, parse_elemental, parse_selection
from lib_merge.errors import MergeError, ParseError
from lib_merge.merge.weights import RandomSpec

U = "model.diffusion_model."
BLOCKS26 = ["BASE", *(f"IN{i:02d}" for i in range(12)), "M00", *(f"OUT{i:02d}" for i in range(12))]
BLOCKS20 = ["BASE", *(f"IN{i:02d}" for i in range(9)), "M00", *(f"OUT{i:02d}" for i in range(9))]

# real SD1 keys with their blocks written by hand (REFERENCE §1)
K_OUT03_ATTN2_K = (U + "output_blocks.3.1.transformer_blocks.0.attn2.to_k.weight", "OUT03")
K_OUT03_ATTN1_Q = (U + "output_blocks.3.1.transformer_blocks.0.attn1.to_q.weight", "OUT03")
K_OUT04_ATTN1_OUT = (U + "output_blocks.4.1.transformer_blocks.0.attn1.to_out.0.weight", "OUT04")
K_OUT04_ATTN2_Q = (U + "output_blocks.4.1.transformer_blocks.0.attn2.to_q.weight", "OUT04")
K_OUT05_ATTN2_K = (U + "output_blocks.5.1.transformer_blocks.0.attn2.to_k.weight", "OUT05")
K_IN01_ATTN2_K = (U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", "IN01")
K_IN04_FF = (U + "input_blocks.4.1.transformer_blocks.0.ff.net.0.proj.weight", "IN04")
K_IN08_SKIP = (U + "input_blocks.8.0.in_layers.2.weight", "IN08")
K_MID_ATTN1 = (U + "middle_block.1.transformer_blocks.0.attn1.to_q.weight", "M00")
K_TE = ("cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight", "BASE")
K_TIME = (U + "time_embed.0.weight", "IN00")
SAMPLE = [K_OUT03_ATTN2_K, K_OUT03_ATTN1_Q, K_OUT04_ATTN1_OUT, K_OUT04_ATTN2_Q, K_OUT05_ATTN2_K, K_IN01_ATTN2_K,
          K_IN04_FF, K_IN08_SKIP, K_MID_ATTN1, K_TE, K_TIME]


def test_sample_keys_exist_and_their_blocks_are_right():
    layout = L.checkpoint("sd1")
    for key, block in SAMPLE:
        assert key in layout
        assert SD1.block_of(key) == block


def elemental(text: str, arch=SD1, seed: int | None = None) -> Elemental:
    return Elemental(parse_elemental(text, arch), RandomSpec(seed) if seed is not None else None)


def ratio(el: Elemental, kb: tuple[str, str]) -> float | None:
    return el.ratio(*kb)


def perr(text: str, arch=SD1) -> str:
    with pytest.raises(ParseError) as e:
        Elemental(parse_elemental(text, arch), None)
    assert "Fix:" in str(e.value)
    return str(e.value)


# ---------------------------------------------------------------- the reference's semantics, one by one

def test_the_reference_example():
    el = elemental("OUT03 OUT04:attn2 attn1.to_out:0.5")
    assert ratio(el, K_OUT03_ATTN2_K) == 0.5
    assert ratio(el, K_OUT04_ATTN1_OUT) == 0.5
    assert ratio(el, K_OUT04_ATTN2_Q) == 0.5
    assert ratio(el, K_OUT03_ATTN1_Q) is None  # attn1 but not attn1.to_out
    assert ratio(el, K_OUT05_ATTN2_K) is None  # attn2 but another block
    assert ratio(el, K_IN01_ATTN2_K) is None


def test_the_self_scale_example_from_section_2():
    el = elemental("OUT05 OUT08:attn1:0.88")
    assert ratio(el, (U + "output_blocks.8.1.transformer_blocks.0.attn1.to_v.weight", "OUT08")) == 0.88
    assert ratio(el, K_OUT05_ATTN2_K) is None


@pytest.mark.parametrize("sep", [",", "\n", ",\n", " , ", "\r\n", "\n\n"])
def test_entries_split_by_commas_or_newlines_and_the_last_match_wins(sep):
    el = elemental(sep.join(["OUT03:attn2:0.5", "OUT03:attn2.to_k:0.1", "IN01::0.7"]))
    assert ratio(el, K_OUT03_ATTN2_K) == 0.1  # both match: the later one
    assert ratio(el, (U + "output_blocks.3.1.transformer_blocks.0.attn2.to_v.weight", "OUT03")) == 0.5
    assert ratio(el, K_IN01_ATTN2_K) == 0.7
    assert ratio(el, K_OUT04_ATTN2_Q) is None


def test_a_later_broad_rule_overrides_an_earlier_narrow_one():
    el = elemental("OUT03:attn2:0.1\n::0.9")
    assert ratio(el, K_OUT03_ATTN2_K) == 0.9
    el = elemental("::0.9\nOUT03:attn2:0.1")
    assert ratio(el, K_OUT03_ATTN2_K) == 0.1
    assert ratio(el, K_TE) == 0.9


def test_empty_blocks_mean_every_block_and_empty_elements_every_key():
    every_block = elemental(":attn2:0.3")
    assert [ratio(every_block, kb) for kb in SAMPLE] == [0.3 if "attn2" in k else None for k, _ in SAMPLE]
    every_key = elemental("IN04::0.3")
    assert ratio(every_key, K_IN04_FF) == 0.3
    assert ratio(every_key, K_IN08_SKIP) is None
    everything = elemental("::-0.25")
    assert all(ratio(everything, kb) == -0.25 for kb in SAMPLE)
    assert ratio(everything, K_TE) == -0.25  # BASE too


def test_not_on_blocks():
    el = elemental("NOT OUT03 OUT04:attn2:0.5")
    assert ratio(el, K_OUT03_ATTN2_K) is None
    assert ratio(el, K_OUT04_ATTN2_Q) is None
    assert ratio(el, K_OUT05_ATTN2_K) == 0.5
    assert ratio(el, K_IN01_ATTN2_K) == 0.5
    assert ratio(el, K_OUT03_ATTN1_Q) is None  # still only attn2


def test_not_on_elements():
    el = elemental("OUT03 OUT04:NOT attn2 .ff.:0.5")
    assert ratio(el, K_OUT03_ATTN2_K) is None
    assert ratio(el, K_OUT03_ATTN1_Q) == 0.5
    assert ratio(el, K_OUT04_ATTN1_OUT) == 0.5
    assert ratio(el, K_IN04_FF) is None  # other block


def test_not_on_both_and_not_after_a_tab_or_in_lowercase():
    el = elemental("NOT\tOUT03:not attn2:0.5")
    assert ratio(el, K_OUT03_ATTN1_Q) is None
    assert ratio(el, K_OUT04_ATTN2_Q) is None
    assert ratio(el, K_OUT04_ATTN1_OUT) == 0.5
    assert ratio(el, K_MID_ATTN1) == 0.5


def test_a_lone_not_keeps_the_incumbents_meaning_every_block():
    # the incumbent computes any([]) ^ NOT = True: `NOT` with no block names selects every block
    el = elemental("NOT:attn2:0.5")
    assert ratio(el, K_OUT03_ATTN2_K) == 0.5 and ratio(el, K_IN01_ATTN2_K) == 0.5
    assert ratio(el, K_OUT03_ATTN1_Q) is None


def test_words_that_start_with_not_are_not_negation():
    el = elemental(":note:0.5")
    assert el.rules[0].negate_elements is False and el.rules[0].elements == ("note",)


@pytest.mark.parametrize("spec", ["IN03-IN07", "IN07-IN03", "in07-in03", "IN03 IN04-IN06 IN07", "IN05-IN03 IN07-IN06"])
def test_ranges_in_either_order(spec):
    rule = parse_elemental(f"{spec}::1", SD1)[0]
    assert rule.blocks == {"IN03", "IN04", "IN05", "IN06", "IN07"}
    el = elemental(f"{spec}::1")
    assert ratio(el, K_IN04_FF) == 1.0
    assert ratio(el, K_IN08_SKIP) is None
    assert ratio(el, K_IN01_ATTN2_K) is None


def test_a_range_across_the_middle():
    assert parse_elemental("OUT00-IN11::1", SD1)[0].blocks == {"IN11", "M00", "OUT00"}
    assert parse_elemental("IN05-OUT05::1", SD1)[0].blocks == set(BLOCKS26[6:20])
    assert parse_elemental("BASE-OUT11::1", SD1)[0].blocks == set(BLOCKS26)
    assert parse_elemental("MID::1", SD1)[0].blocks == {"M00"}


def test_elements_match_anywhere_in_the_key_after_the_unet_prefix():
    el = elemental(":middle_block.1:0.2,:.bias:0.4")
    assert ratio(el, K_MID_ATTN1) == 0.2
    assert ratio(el, (U + "middle_block.1.proj_in.bias", "M00")) == 0.4
    assert ratio(el, K_TE) is None


def test_comments_and_blank_entries_are_skipped():
    el = elemental("# tweak the faces, then the style\n\nOUT03:attn2:0.5,\n  # OUT04::1\n,")
    assert len(el.rules) == 1
    assert ratio(el, K_OUT03_ATTN2_K) == 0.5
    assert parse_elemental("", SD1) == ()
    assert parse_elemental("  \n , ", SD1) == ()


def test_ff_names_the_feed_forward_layers_only():
    # Ours: `ff` is also inside `diffusion_model`; elements are matched after the UNet prefix, so
    # `ff` means feed-forward (the incumbent matched every UNet key with it)
    ff_key = (U + "output_blocks.3.1.transformer_blocks.0.ff.net.2.weight", "OUT03")
    for text in ("OUT03:ff:0.5", "OUT03:.ff.:0.5"):
        el = elemental(text)
        assert ratio(el, ff_key) == 0.5
        assert ratio(el, K_OUT03_ATTN1_Q) is None


def test_ratio_forms():
    el = elemental("IN01::.5, IN04::-1, IN08::1e-2, M00::+2")
    assert [ratio(el, kb) for kb in (K_IN01_ATTN2_K, K_IN04_FF, K_IN08_SKIP, K_MID_ATTN1)] == [0.5, -1.0, 0.01, 2.0]


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("text,colons", [("OUT03:attn2", 1), ("OUT03 attn2 0.5", 0), ("OUT03:attn2:0.5:1", 3),
                                         ("a::b::1", 4)])
def test_an_entry_needs_exactly_two_colons(text, colons):
    msg = perr("IN01::1\n" + text)
    assert "elemental entry 2" in msg
    assert f"has {colons} colons, expected 2" in msg
    assert "BLOCKS:ELEMENTS:RATIO" in msg


@pytest.mark.parametrize("ratio_text", ["", "abc", "0.5x", "nan", "inf", "1e999", "R2", "0.5.5"])
def test_a_bad_ratio_names_its_entry(ratio_text):
    text = f"OUT03:attn2:{ratio_text}"
    msg = perr(text)
    assert "elemental entry 1" in msg


@pytest.mark.parametrize("bad,arch,suggested", [
    ("IN12", SD1, "IN1"), ("OUT3", SD1, "OUT"), ("IN09", SDXL, "IN0"), ("OUT11", SDXL, "OUT"), ("MIDDLE", SD1, ""),
    ("INPUT", SD1, ""),
])
def test_unknown_block_names_are_rejected_with_a_suggestion(bad, arch, suggested):
    msg = perr(f"{bad}:attn1:0.5", arch)
    assert f"unknown block {bad!r} for {arch.label}" in msg
    if suggested:
        assert f"did you mean '{suggested}" in msg
    assert ("OUT08" if arch is SDXL else "OUT11") in msg  # the fix names the real range


@pytest.mark.parametrize("bad", ["IN03--IN05", "IN03-", "-IN03", "IN01-IN02-IN03", "NOT NOT IN03"])
def test_malformed_block_lists(bad):
    perr(f"{bad}::1")


def test_random_ratios_need_a_seed():
    rules = parse_elemental("OUT03:attn2:R", SD1)
    with pytest.raises(ParseError) as e:
        Elemental(rules, None)
    assert "elemental entry 1" in str(e.value) and "seed" in str(e.value)


# ---------------------------------------------------------------- random ratios

def test_random_ratios_are_drawn_from_the_seed():
    text = "OUT03::R\nIN01::U\nIN04::X\nM00::r"
    a, b, c = elemental(text, seed=11), elemental(text, seed=11), elemental(text, seed=12)
    assert a.ratios == b.ratios
    assert a.ratios != c.ratios
    assert [r.ratio for r in a.rules] == ["R", "U", "X", "R"]
    assert ratio(a, K_OUT03_ATTN2_K) == a.ratios[0] and 0.0 <= a.ratios[0] <= 1.0
    assert ratio(a, K_IN01_ATTN2_K) == a.ratios[1] and -0.5 <= a.ratios[1] <= 1.5
    assert ratio(a, K_MID_ATTN1) == a.ratios[3]
    assert a.ratios[0] != a.ratios[3]  # two R entries draw two values


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(-3, 3), st.floats(0, 2))
def test_random_ratio_ranges(seed, lo, width):
    el = Elemental(parse_elemental("::R\n::U\n::X\n::X", SD1), RandomSpec(seed, lo, lo + width))
    r, u, x1, x2 = el.ratios
    assert 0.0 <= r <= 1.0 and -0.5 <= u <= 1.5 and lo <= x1 <= lo + width and lo <= x2 <= lo + width


def test_numbers_do_not_consume_random_draws():
    # the R entry draws the same value whatever numeric entries surround it
    a = elemental("::R", seed=3).ratios[0]
    b = elemental("IN01::0.5\n::R\nIN04::1", seed=3).ratios[1]
    assert a == b


# ---------------------------------------------------------------- SDXL: exact names, no shift

XL_MID = U + "middle_block.1.transformer_blocks.3.attn2.to_k.weight"
XL_IN08 = U + "input_blocks.8.1.transformer_blocks.9.attn1.to_q.weight"
XL_OUT08 = U + "output_blocks.8.0.skip_connection.weight"
XL_OUT_CONV = U + "out.2.weight"
XL_LABEL = U + "label_emb.0.0.weight"


def test_sdxl_keys_exist_with_their_blocks():
    layout = L.checkpoint("sdxl")
    for key, block in [(XL_MID, "M00"), (XL_IN08, "IN08"), (XL_OUT08, "OUT08"), (XL_OUT_CONV, "OUT08"),
                       (XL_LABEL, "IN00")]:
        assert key in layout and SDXL.block_of(key) == block


def test_sdxl_block_names_match_exactly():
    el = elemental("M00:attn2:0.3\nIN08:attn1:0.6\nOUT08::0.9", SDXL)
    assert el.ratio(XL_MID, "M00") == 0.3
    assert el.ratio(XL_IN08, "IN08") == 0.6
    assert el.ratio(XL_OUT08, "OUT08") == 0.9
    assert el.ratio(XL_OUT_CONV, "OUT08") == 0.9
    # the incumbent read M00 as IN09 on SDXL: here an M00 rule must not touch IN08, nor IN08 the middle
    assert el.ratio(U + "input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight", "IN08") is None
    assert el.ratio(U + "middle_block.1.transformer_blocks.3.attn1.to_q.weight", "M00") is None


def test_sdxl_ranges_use_sdxls_blocks():
    assert parse_elemental("IN07-OUT01::1", SDXL)[0].blocks == {"IN07", "IN08", "M00", "OUT00", "OUT01"}
    assert parse_elemental("OUT08-BASE::1", SDXL)[0].blocks == set(BLOCKS20)


# ---------------------------------------------------------------- property tests against the reference

VOCAB = ["attn1", "attn2", ".ff.", "norm1", "norm3", "proj_in", "proj_out", "to_out", "to_k", "in_layers", "out_layers",
         "emb_layers", "skip_connection", "transformer_blocks", "weight", "bias", "time_embed", "self_attn"]
SD1_KEYS = [(k, SD1.block_of(k)) for k in L.checkpoint("sd1") if SD1.block_of(k) is not None][::7]


@st.composite
def entries(draw, arch_blocks=tuple(BLOCKS26)):
    """(text, expected parts): blocks as a hand-expanded set or None, NOT flags, elements, ratio text."""
    names = list(arch_blocks)
    items, chosen = [], set()
    for _ in range(draw(st.integers(0, 3))):
        a = draw(st.sampled_from(names))
        if draw(st.booleans()):
            b = draw(st.sampled_from(names))
            i, j = sorted((names.index(a), names.index(b)))
            chosen.update(names[i:j + 1])
            item = f"{a}-{b}"
        else:
            chosen.add(a)
            item = a
        items.append(item.lower() if draw(st.booleans()) and draw(st.booleans()) else item)
    nb = draw(st.booleans())
    elems = draw(st.lists(st.sampled_from(VOCAB), max_size=3))
    ne = draw(st.booleans())
    ratio_text = draw(st.one_of(st.floats(-2, 2).map(repr), st.sampled_from(["0", "1", ".5", "-1", "R", "U", "X"])))
    sp = draw(st.sampled_from([" ", "  ", "\t"]))
    bl = ("NOT" + sp if nb else "") + sp.join(items)
    el = ("NOT" + sp if ne else "") + sp.join(elems)
    text = f"{sp if draw(st.booleans()) else ''}{bl}:{el}:{ratio_text}"
    return text, (frozenset(chosen) if items else None, nb, tuple(elems), ne, ratio_text)


def expected_ratio(parts, values, key, block):
    """REFERENCE §4, written out again: the last entry whose blocks and elements both match."""
    for (blocks, nb, elems, ne, _), value in zip(reversed(parts), reversed(values)):
        block_ok = blocks is None or ((block in blocks) != nb)
        elem_ok = not elems or (any(e in key for e in elems) != ne)
        if block_ok and elem_ok:
            return value
    return None


def rule_parts(rule):
    return rule.blocks, rule.negate_blocks, rule.elements, rule.negate_elements, rule.ratio


@settings(max_examples=60, deadline=None)
@given(st.lists(entries(), max_size=5), st.sampled_from([",", "\n", " ,\n"]), st.integers(0, 1000))
def test_parsed_rules_follow_the_reference(es, sep, seed):
    text = sep.join(t for t, _ in es)
    rules = parse_elemental(text, SD1)
    parts = [p for _, p in es]
    assert [rule_parts(r) for r in rules] == [(b, nb, e, ne, r.upper() if r in "rux" else r)
                                            for b, nb, e, ne, r in parts]
    el = Elemental(rules, RandomSpec(seed, -1, 2))
    values = [el.ratios[i] if p[4] in "RUX" else float(p[4]) for i, p in enumerate(parts)]
    for i, p in enumerate(parts):
        if p[4] == "R":
            assert 0 <= values[i] <= 1
        elif p[4] == "X":
            assert -1 <= values[i] <= 2
    for key, block in SD1_KEYS:
        assert el.ratio(key, block) == expected_ratio(parts, values, key, block)


@settings(max_examples=60, deadline=None)
@given(st.lists(entries(), max_size=5), st.integers(0, 1000))
def test_rules_written_back_parse_to_the_same_rules(es, seed):
    rules = parse_elemental("\n".join(t for t, _ in es), SD1)
    text = "\n".join(r.text for r in rules)
    again = parse_elemental(text, SD1)
    assert [rule_parts(r) for r in again] == [rule_parts(r) for r in rules]
    a, b = Elemental(rules, RandomSpec(seed)), Elemental(again, RandomSpec(seed))
    assert a.ratios == b.ratios
    assert all(a.ratio(k, bl) == b.ratio(k, bl) for k, bl in SD1_KEYS)
    # and once more: the text is a fixed point
    assert "\n".join(r.text for r in again) == text


def test_rule_text_is_what_users_write():
    rules = parse_elemental("NOT IN07-IN03 mid:NOT attn1 ff:0.25\n:attn2:R\nOUT11::1", SD1)
    assert [r.text for r in rules] == ["NOT IN03 IN04 IN05 IN06 IN07 M00:NOT attn1 ff:0.25", ":attn2:R", "OUT11::1"]


@settings(max_examples=150, deadline=None)
@given(st.text(), st.sampled_from([SD1, SDXL]))
def test_any_text_parses_or_raises_parse_error(text, arch):
    try:
        rules = parse_elemental(text, arch)
        Elemental(rules, RandomSpec(1))
    except ParseError as e:
        assert isinstance(e, MergeError)


SOUP = st.lists(st.sampled_from(["IN03", "in03", "OUT11", "M00", "MID", "BASE", "IN09", "-", "NOT", "not", " ", "\t",
                                 ":", ":", ",", "\n", "#", "attn1", "ff", "0.5", "R", "x", "1e999", "nan", "", "IN3",
                                 "OUT08-IN02", "٣", "İ"]), max_size=25).map("".join)


@settings(max_examples=200, deadline=None)
@given(SOUP, st.sampled_from([SD1, SDXL]), st.booleans())
def test_token_soup_parses_or_raises_parse_error(text, arch, seeded):
    try:
        el = Elemental(parse_elemental(text, arch), RandomSpec(2) if seeded else None)
    except ParseError:
        return
    for key, block in SD1_KEYS[:20]:
        el.ratio(key, block)


# ---------------------------------------------------------------- include / exclude selections

def test_selection_blocks_ranges_and_key_parts():
    sel = parse_selection("IN00 OUT05-OUT03, attn2 proj_in", SD1, "--exclude")
    assert sel.blocks == {"IN00", "OUT03", "OUT04", "OUT05"}
    assert sel.elements == ("attn2", "proj_in")
    assert sel.vae is False and sel.adjust is False


@pytest.mark.parametrize("text", ["VAE ADJUST", "vae,adjust", "Vae Adjust"])
def test_selection_switches(text):
    sel = parse_selection(text, SD1, "--include")
    assert sel.vae and sel.adjust and sel.blocks == frozenset() and sel.elements == ()


def test_selection_block_names_are_case_insensitive_and_mid_is_m00():
    assert parse_selection("in03 mid out00-out01", SD1, "--include").blocks == {"IN03", "M00", "OUT00", "OUT01"}


@pytest.mark.parametrize("text,bad", [("Attn2", "Attn2"), ("FOO", "FOO"), ("IN03 Proj_in", "Proj_in"),
                                      ("IN03-attn", "IN03-attn")])
def test_selection_rejects_uppercase_non_block_tokens(text, bad):
    with pytest.raises(ParseError) as e:
        parse_selection(text, SD1, "--include")
    msg = str(e.value)
    assert msg.startswith("--include:") and repr(bad) in msg and "lowercase" in msg


def test_selection_unknown_blocks_are_rejected():
    with pytest.raises(ParseError, match="unknown block 'IN12'"):
        parse_selection("IN12", SD1, "--exclude")
    with pytest.raises(ParseError, match="unknown block 'IN09' for SDXL"):
        parse_selection("IN09", SDXL, "--exclude")
    assert parse_selection("IN11", SD1, "--exclude").blocks == {"IN11"}


def test_selection_matches():
    sel = parse_selection("OUT03 attn2 VAE", SD1, "--exclude")
    vae_key = "first_stage_model.decoder.conv_in.weight"
    assert sel.matches(K_OUT03_ATTN1_Q[0], "OUT03", False, False)  # by block
    assert sel.matches(K_IN01_ATTN2_K[0], "IN01", False, False)  # by key part
    assert not sel.matches(K_IN04_FF[0], "IN04", False, False)
    assert sel.matches(vae_key, "BASE", True, False)  # the VAE switch
    no_vae = parse_selection("BASE decoder", SD1, "--exclude")
    assert no_vae.matches(vae_key, "BASE", True, False)  # a key part names VAE keys
    assert not parse_selection("BASE", SD1, "--exclude").matches(vae_key, "BASE", True, False)  # BASE is not the VAE
    adj = parse_selection("ADJUST", SD1, "--exclude")
    assert adj.matches(U + "out.2.bias", "OUT11", False, True)
    assert not adj.matches(U + "out.2.bias", "OUT11", False, False)


def selection_text(sel) -> str:
    return " ".join([*sorted(sel.blocks), *sel.elements, *(["VAE"] if sel.vae else []),
                     *(["ADJUST"] if sel.adjust else [])])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(BLOCKS26), st.sampled_from(VOCAB),
                          st.sampled_from(["VAE", "ADJUST", "vae", "IN02-IN05", "out11-m00"])), max_size=8),
       st.sampled_from([" ", ",", ", ", "\n"]))
def test_selection_round_trips(tokens, sep):
    sel = parse_selection(sep.join(tokens), SD1, "--include")
    assert parse_selection(selection_text(sel), SD1, "--include") == sel
    assert set(sel.elements) == {t for t in tokens if t in VOCAB}


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(), SOUP), st.sampled_from([SD1, SDXL]))
def test_selection_fuzz_raises_only_parse_error(text, arch):
    try:
        parse_selection(text, arch, "--exclude")
    except ParseError:
        pass
