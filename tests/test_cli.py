"""The CLI: every user mistake exits non-zero with one line naming the problem and the fix,
no traceback, and no output file (an existing one untouched)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from lib_merge.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def files(d):
    return sorted(os.listdir(d))


def test_merge_happy_path(tmp_path, capsys, sd1_models):
    out = tmp_path / "m.safetensors"
    code, stdout, err = run(capsys, "merge", *sd1_models[:2], "-o", out, "--alpha-blocks", "GRAD_V",
                            "--elemental", "OUT05 OUT08:attn1:0.88", "--quiet")
    assert code == 0 and out.exists()
    code, stdout, _ = run(capsys, "inspect", out)
    assert code == 0 and "SD1.x" in stdout and "OUT11" in stdout and '"alpha_blocks"' in stdout


def test_elemental_from_file(tmp_path, capsys, sd1_models):
    el = tmp_path / "el.txt"
    el.write_text("OUT05 OUT08:attn1:0.88\n# a comment\nIN04::0\n")
    out = tmp_path / "m.safetensors"
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", out, "--elemental", f"@{el}", "--quiet")
    assert code == 0, err


BAD = [
    (["--alpha-blocks", "1,2,3"], "has 3 values but SD1.x takes 26"),
    (["--alpha-blocks", "GRAD_W"], "unknown preset 'GRAD_W' (did you mean 'GRAD_V'?)"),
    (["--alpha-blocks", "0," + ",".join(["0.5"] * 4) + ",abc" + ",0.5" * 20], "value 6 (IN04)"),
    (["--elemental", "OUT05 OUT08:attn1"], "expected 2"),
    (["--elemental", "OUT13:attn1:0.5"], "unknown block 'OUT13'"),
    (["--elemental", "OUT03:atn1:0.5"], "key part 'atn1' matches no key"),
    (["--adjust", "1,2,3"], "adjust has 3 numbers, expected 8 (IN, OUT, OUT2, CONT, BRI, COL1, COL2, COL3)"),
    (["--include", "IN99"], "unknown block 'IN99'"),
    (["--mode", "add_difference"], "add_difference needs 3 models (A, B, C) but 2 were given"),
    (["--calc", "cosine_a", "--mode", "add_difference"], "works with --mode weight_sum"),
    (["--alpha-blocks", "0,R" + ",0" * 24, "--x-range", "1"], "--x-range '1' needs two numbers"),
]


@pytest.mark.parametrize("extra,message", BAD)
def test_bad_input_one_line_no_file(tmp_path, capsys, sd1_models, extra, message):
    out = tmp_path / "m.safetensors"
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", out, "--quiet", *extra)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err and "Fix:" in err
    assert files(tmp_path) == []


def test_bad_files(tmp_path, capsys, sd1_models, sdxl_models):
    out = tmp_path / "out" / "m.safetensors"
    out.parent.mkdir()
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(open(sd1_models[1], "rb").read()[:-100])
    notst = tmp_path / "model.safetensors"
    notst.write_bytes(b"PK\x03\x04 this is a zip, not safetensors" * 10)
    cases = [
        ([sd1_models[0], tmp_path / "missing.safetensors"], "model file not found"),
        ([sd1_models[0], trunc], "trunc.safetensors is truncated"),
        ([sd1_models[0], notst], "model.safetensors is not a safetensors file"),
        ([sd1_models[0], sdxl_models[1]], "cannot merge SDXL model B.safetensors into SD1.x model A.safetensors"),
    ]
    for models, message in cases:
        code, _, err = run(capsys, "merge", *models, "-o", out, "--quiet")
        assert code == 2 and message in err, err
        assert err.count("\n") == 1
    assert files(out.parent) == []


def test_existing_output_needs_overwrite(tmp_path, capsys, sd1_models):
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"keep me")
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", out, "--quiet")
    assert code == 2 and "exists already" in err and "--overwrite" in err
    assert out.read_bytes() == b"keep me"
    code, _, _ = run(capsys, "merge", *sd1_models[:2], "-o", out, "--quiet", "--overwrite")
    assert code == 0 and len(load_file(str(out))) == 1131


def test_ckpt_output_only_on_request(tmp_path, capsys, sd1_models):
    import torch
    out = tmp_path / "m.ckpt"
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", out, "--quiet")
    assert code == 2 and "does not end in .safetensors" in err and not out.exists()
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", out, "--quiet", "--ckpt", "--alpha", "1")
    assert code == 0, err
    sd = torch.load(out, weights_only=True)["state_dict"]
    b = load_file(sd1_models[1])
    assert torch.equal(sd["model.diffusion_model.out.2.weight"], b["model.diffusion_model.out.2.weight"])
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", out, "--quiet", "--ckpt")
    assert code == 2 and "exists already" in err


def test_self_needs_only_a(tmp_path, capsys, sd1_models):
    out = tmp_path / "m.safetensors"
    code, _, err = run(capsys, "merge", sd1_models[0], "-o", out, "--calc", "self", "--quiet",
                       "--elemental", "OUT05 OUT08:attn1:0.88")
    assert code == 0, err
    code, _, err = run(capsys, "merge", *sd1_models[:2], "-o", tmp_path / "x.safetensors", "--calc", "self")
    assert code == 2 and "uses model A only" in err


def test_replay_is_bit_identical_with_random_weights(tmp_path, capsys, sdxl_models):
    out = tmp_path / "m.safetensors"
    code, _, err = run(capsys, "merge", *sdxl_models, "-o", out, "--mode", "add_difference",
                       "--alpha-blocks", "0,R,U,X" + ",0.5" * 16, "--elemental", "OUT01::R", "--quiet")
    assert code == 0, err
    again = tmp_path / "again.safetensors"
    code, _, err = run(capsys, "replay", out, "-o", again, "--models-dir", os.path.dirname(sdxl_models[0]), "--quiet")
    assert code == 0, err
    assert out.read_bytes() == again.read_bytes()


def test_replay_refuses_foreign_files(tmp_path, capsys, sd1_models):
    code, _, err = run(capsys, "replay", sd1_models[0], "-o", tmp_path / "x.safetensors")
    assert code == 2 and "carries no merge recipe" in err


def test_module_entry_point_and_ctrl_c_leaves_nothing(tmp_path, sd1_models):
    r = subprocess.run([sys.executable, "-m", "lib_merge", "merge", *sd1_models[:2], "-o",
                        str(tmp_path / "m.safetensors"), "--alpha-blocks", "nope"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("blockmerge: error: --alpha-blocks: unknown preset 'nope'")
    assert "Traceback" not in r.stderr


def test_inspect_reads_loras_too(tmp_path, capsys):
    from tests.synth import write_lora
    write_lora(tmp_path / "mine.safetensors", "sdxl")
    code, out, _ = run(capsys, "inspect", tmp_path / "mine.safetensors")
    assert code == 0 and out.startswith("mine.safetensors: kohya LoRA, SDXL")


def test_presets_listing(capsys):
    code, out, _ = run(capsys, "presets", "--arch", "sdxl")
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("GRAD_V\t"))
    assert len(line.split("\t")[1].split(",")) == 20
