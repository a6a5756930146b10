"""The rough edges of issue 10: NOT position, lowercase preset, lbwe= with colons, hashing bar units,
inspect's display, unused beta/gamma, replay --help."""
from __future__ import annotations

import json

import pytest

from lib_merge.arch.blocks import SD1
from lib_merge.cli import build_parser, main
from lib_merge.errors import ParseError
from lib_merge.io.safetensors_io import read_header
from lib_merge.lora.tag import parse_spec
from lib_merge.merge.elemental import parse_elemental


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.mark.parametrize("text", ["OUT05 NOT OUT08:attn1:0.5", "OUT05:attn1 NOT ff:0.5"])
def test_not_inside_a_field_is_an_error_saying_where_not_goes(text):
    with pytest.raises(ParseError, match="only at the field's start"):
        parse_elemental(text, SD1)


def test_not_at_the_start_negates():
    (rule,) = parse_elemental("NOT OUT05:NOT attn1:0.5", SD1)
    assert rule.negate_blocks and rule.negate_elements


def test_lowercase_preset_gets_the_suggestion(tmp_path, sd1_models, capsys):
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", tmp_path / "m.safetensors", "--alpha-blocks",
                       "grad_v", "--quiet")
    assert code == 2 and "did you mean 'GRAD_V'" in err


def test_lbwe_with_colons_in_a_spec_says_what_happened():
    with pytest.raises(ParseError) as e:
        parse_spec("my.safetensors:1:1:lbwe=OUT05:attn1:0")
    msg = str(e.value)
    assert "lbwe=" in msg and "colons" in msg and "--lbwe-presets" in msg and "values after the name" not in msg
    assert parse_spec("my.safetensors:lbwe=ATTNDEEPOFF:0.5").te == 0.5  # a multiplier after it still works


def test_hashing_bar_counts_bytes(monkeypatch):
    import tqdm

    from lib_merge.cli_support import tqdm_progress
    seen = {}

    class Bar:
        def __init__(self, total, desc, leave, **kw):
            seen[desc] = kw
            self.n = 0

        def update(self, k):
            self.n += k

        def close(self):
            pass

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    with tqdm_progress(False) as cb:
        cb(10, 100, "hashing A.safetensors")
        cb(10, 100, "merging")
    assert seen["hashing A.safetensors"] == seen["merging"] and seen["merging"]["unit"] == "B"


def test_inspect_pretty_prints_rounded_with_models_in_order(tmp_path, sd1_models, capsys):
    out = tmp_path / "m.safetensors"
    a, b, c = sd1_models
    # C as model A: the labels follow the merge's order, not the names
    assert run(capsys, "merge", c, a, b, "--mode", "add_difference", "--alpha-blocks", "GRAD_V", "-o", out,
               "--quiet")[0] == 0
    code, stdout, _ = run(capsys, "inspect", out)
    assert code == 0
    assert "0.916667" in stdout and "0.9166666666666666" not in stdout
    assert '    "alpha": 0.5,' in stdout.splitlines()  # one setting a line
    models = stdout.split("models:")[-1].strip().splitlines()
    assert [ln.split(":")[0].strip() for ln in models] == ["A", "B", "C"]
    assert [ln.split()[1] for ln in models] == ["C", "A", "B"]
    recipe = json.loads(read_header(str(out))[1]["sd_merge_recipe"])  # the file keeps exact values
    assert recipe["alpha_values"]["IN01"] == 0.9166666666666666  # GRAD_V as the incumbent computes it
    assert "gamma" not in recipe and "beta" not in recipe  # add_difference uses neither


def test_triple_sum_records_beta_but_not_gamma(tmp_path, sd1_models, capsys):
    out = tmp_path / "m.safetensors"
    assert run(capsys, "merge", *sd1_models, "--mode", "triple_sum", "--beta", "0.2", "-o", out, "--quiet")[0] == 0
    recipe = json.loads(read_header(str(out))[1]["sd_merge_recipe"])
    assert recipe["beta"] == 0.2 and "gamma" not in recipe


def test_replay_help_describes_every_argument():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    rp = sub.choices["replay"]
    for action in rp._actions:
        if action.dest != "help":
            assert action.help, action.dest
