"""`compare`: per block and element kind cosine / relative L2, checked against numpy float64 sums over
key sets written out here by hand (regexes on the real key names), not through lib_merge.arch."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from lib_merge.cli import main
from lib_merge.errors import ArchitectureError, Cancelled, MergeError, ModelFileError
from lib_merge.io.safetensors_io import save_tensors
from lib_merge.merge import compare as cmpmod
from lib_merge.merge.compare import compare
from lib_merge.merge.engine_types import CancelToken
from lib_merge.xy.heatmap import colour, draw_heatmap
from tests import synth

U = r"^model\.diffusion_model\."


def _noisy(sd: dict, scale_of, seed: int) -> dict:
    """A copy of `sd` with noise whose size depends on the key (a known pattern of differences)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in sd.items():
        if v.is_floating_point():
            v = (v.float() + scale_of(k) * torch.randn(v.shape, generator=g)).to(v.dtype)
        out[k] = v
    return out


@pytest.fixture(scope="module")
def sdxl_trio(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp_sdxl")
    a = synth.state_dict("sdxl", seed=3)
    b = _noisy(a, lambda k: 0.5 if ".attn2." in k else 0.02, seed=4)  # a "fine-tune" that changed cross-attention
    c = synth.state_dict("sdxl", seed=5)  # unrelated
    paths = []
    for name, sd in (("A", a), ("B", b), ("C", c)):
        p = d / f"{name}.safetensors"
        save_tensors(str(p), sd)
        paths.append(str(p))
    return paths, (a, b, c)


def expected(a: dict, b: dict, pattern: str) -> tuple[float, float]:
    """(cosine, |a-b|/|a|) over every float key matching `pattern`, in numpy float64."""
    keys = [k for k in a if re.search(pattern, k) and a[k].is_floating_point()]
    assert keys, pattern
    x = np.concatenate([a[k].double().numpy().ravel() for k in keys])
    y = np.concatenate([b[k].double().numpy().ravel() for k in keys])
    return float(x @ y / np.sqrt((x @ x) * (y @ y))), float(np.linalg.norm(x - y) / np.linalg.norm(x))


# (row, column, the keys of that cell written out independently)
CELLS = [
    ("IN04", "attn2", U + r"input_blocks\.4\.1\.transformer_blocks\.\d+\.attn2\."),
    ("OUT02", "ff", U + r"output_blocks\.2\.1\.transformer_blocks\.\d+\.ff\."),
    ("M00", "proj", U + r"middle_block\.1\.proj_(in|out)\."),
    ("IN00", "emb", U + r"(time_embed|label_emb)\."),
    ("IN00", "conv", U + r"input_blocks\.0\.0\."),
    ("OUT08", "norm", U + r"(output_blocks\.8\.0\.(in|out)_layers\.0|out\.0)\."),
    ("IN07", "conv", U + r"input_blocks\.7\.0\.(in_layers\.2|out_layers\.3|skip_connection)\."),
    ("BASE", "all", r"^conditioner\.embedders\."),
    ("VAE", "all", r"^first_stage_model\."),
    ("IN04", "all", U + r"input_blocks\.4\."),
    ("OUT08", "all", U + r"(output_blocks\.8\.|out\.)"),
]


@pytest.mark.parametrize("row,col,pattern", CELLS)
def test_cells_equal_numpy_float64(sdxl_trio, row, col, pattern):
    paths, (a, b, c) = sdxl_trio
    res = _cached(paths)
    for pair, other in zip(res.pairs, (b, c)):
        stats = pair.rows[row] if col == "all" else pair.cells[(row, col)]
        cos, l2 = expected(a, other, pattern)
        assert stats.cosine == pytest.approx(cos, abs=1e-9)
        assert stats.rel_l2 == pytest.approx(l2, rel=1e-9)


_CACHE: dict = {}


def _cached(paths):
    key = tuple(paths)
    if key not in _CACHE:
        _CACHE[key] = compare(paths)
    return _CACHE[key]


def test_total_and_layout(sdxl_trio):
    paths, (a, b, c) = sdxl_trio
    res = _cached(paths)
    cos, l2 = expected(a, b, r".")  # every float key of a full checkpoint lies in a block or the VAE
    assert res.pairs[0].total.cosine == pytest.approx(cos, abs=1e-9)
    assert res.pairs[0].total.rel_l2 == pytest.approx(l2, rel=1e-9)
    assert res.rows == ("BASE", *(f"IN{i:02d}" for i in range(9)), "M00", *(f"OUT{i:02d}" for i in range(9)), "VAE")
    assert res.kinds == ("attn1", "attn2", "ff", "norm", "proj", "conv", "emb")
    assert res.pairs[0].total.params == sum(v.numel() for v in a.values() if v.is_floating_point())
    # the fine-tune's cross-attention stands out: in every transformer block attn2 is the least alike
    p = res.pairs[0]
    for row in ("IN04", "IN08", "M00", "OUT00", "OUT05"):
        assert min(p.cells[(row, k)].cosine for k in res.kinds if (row, k) in p.cells) == p.cells[(row, "attn2")].cosine
    assert res.notes == []


def test_chunked_reads_give_the_same_sums(sdxl_trio, monkeypatch):
    paths, _ = sdxl_trio
    monkeypatch.setattr(cmpmod, "CHUNK", 7)  # every tensor in many odd pieces
    small = compare(paths[:2])
    whole = _cached(paths).pairs[0]
    for cell, s in small.pairs[0].cells.items():
        assert s.dot == pytest.approx(whole.cells[cell].dot, rel=1e-12, abs=1e-12)
        assert s.dd == pytest.approx(whole.cells[cell].dd, rel=1e-12, abs=1e-12)


def test_identical_and_ckpt(tmp_path, sdxl_trio):
    paths, (a, _, _) = sdxl_trio
    ck = tmp_path / "A.ckpt"
    torch.save({"state_dict": a}, str(ck))
    res = compare([paths[0], str(ck)])
    for s in res.pairs[0].cells.values():
        assert s.cosine == pytest.approx(1.0, abs=1e-12) and s.rel_l2 == 0.0


def test_progress_and_cancel(sdxl_trio):
    paths, _ = sdxl_trio
    seen = []
    compare(paths[:2], progress=lambda d, t, w: seen.append((d, t, w)))
    assert seen[-1][0] == seen[-1][1] and {w for _, _, w in seen} == {"comparing"}
    assert all(x[0] <= y[0] for x, y in zip(seen, seen[1:]))
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(Cancelled):
        compare(paths[:2], cancel=tok)


def test_pruned_against_full_notes_the_missing_keys(tmp_path, sdxl_trio):
    paths, (a, _, _) = sdxl_trio
    pruned = {k: v for k, v in a.items() if ".transformer_blocks.1." not in k}
    p = tmp_path / "pruned.safetensors"
    save_tensors(str(p), pruned)
    res = compare([str(p), paths[0]])
    by_name = "transformer layers in pruned.safetensors but 10 in A.safetensors (a pruned SDXL such as SSD-1B or " \
              "Vega): layers were compared by name; pass --key-map MAP.json to compare the layers they came from"
    assert res.notes == [f"input_blocks.4.1.transformer_blocks has 1 {by_name}".replace("but 10", "but 2")]
    assert res.pairs[0].total.cosine == pytest.approx(1.0)
    res = compare([paths[0], str(p)])
    missing = sum(1 for k in a if ".transformer_blocks.1." in k)
    assert res.notes[1:] == [f"{missing} keys of A are not in B (pruned.safetensors) and are left out"]
    assert "compared by name" in res.notes[0]


def test_flux_kinds(tmp_path):
    from lib_merge.arch.flux_layouts import FLUX_TINY, checkpoint
    g = torch.Generator().manual_seed(0)
    a = {k: torch.randn(s, generator=g).to(torch.bfloat16) for k, s in checkpoint(FLUX_TINY, "dev", True).items()}
    b = _noisy(a, lambda k: 0.3 if "single_blocks" in k else 0.01, seed=1)
    for n, sd in (("a", a), ("b", b)):
        save_tensors(str(tmp_path / f"{n}.safetensors"), sd)
    res = compare([str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")])
    assert res.kinds[:4] == ("attn", "mlp", "linear", "mod")
    assert res.rows[:4] == ("CLIP", "T5", "IN", "D00") and res.rows[-1] == "VAE"
    cos, _ = expected(a, b, U + r"single_blocks\.0\.linear[12]\.")
    assert res.pairs[0].cells[("S00", "linear")].cosine == pytest.approx(cos, abs=1e-9)
    assert res.pairs[0].rows["S00"].cosine < res.pairs[0].rows["D00"].cosine


# ---- heatmap ------------------------------------------------------------------------------------
def test_heatmap_png(tmp_path, sdxl_trio):
    paths, _ = sdxl_trio
    res = _cached(paths)
    hm = draw_heatmap(res)
    out = tmp_path / "h.png"
    hm.save(str(out))
    img = Image.open(out)
    img.load()
    assert img.format == "PNG" and img.size == hm.image.size and img.mode == "RGB"
    rows, cols = len(res.rows), len(res.kinds) + 1
    assert len(hm.cells) == 2 * 2 * rows * cols  # 2 pairs x 2 metrics
    for pair in res.pairs:
        for metric, high in (("cosine", False), ("rel_l2", True)):
            vals = {(r, c): (pair.rows[r] if c == "all" else pair.cells.get((r, c)))
                    for r in res.rows for c in (*res.kinds, "all")}
            vals = {rc: getattr(s, metric) for rc, s in vals.items() if s is not None}
            worst = (max if high else min)(vals, key=vals.get)
            best = (min if high else max)(vals, key=vals.get)
            x0, y0, _, _ = hm.cells[(pair.label, metric, *worst)]
            assert img.getpixel((x0 + 2, y0 + 2)) == colour(1.0)  # the darkest red
            x0, y0, _, _ = hm.cells[(pair.label, metric, *best)]
            assert img.getpixel((x0 + 2, y0 + 2)) == colour(0.0)  # the palest
            lx0, ly0, lx1, ly1 = hm.legends[(pair.label, metric)]
            assert img.getpixel((lx0 + 2, ly0)) == colour(1.0) and img.getpixel((lx0 + 2, ly1)) == colour(0.0)
            assert ly1 - ly0 >= rows * 10
            # darker = more different, cell by cell
            lum = {rc: sum(img.getpixel((hm.cells[(pair.label, metric, *rc)][0] + 2,
                                         hm.cells[(pair.label, metric, *rc)][1] + 2))) for rc in vals}
            order = sorted(vals, key=lambda rc: vals[rc] if high else -vals[rc])
            assert all(lum[p] >= lum[q] for p, q in zip(order, order[1:]))
    # an empty cell (no attn2 in IN00) is grey; the title row holds ink
    x0, y0, _, _ = hm.cells[("A vs B", "cosine", "IN00", "attn2")]
    assert img.getpixel((x0 + 2, y0 + 2)) == (200, 200, 200)
    assert any(img.getpixel((x, y)) != (255, 255, 255) for x in range(0, 200) for y in range(0, 20))


def test_colour_scale_ends():
    assert colour(0.0) == (255, 255, 204) and colour(1.0) == (128, 0, 38)
    lum = [sum(colour(t / 20)) for t in range(21)]
    assert all(x > y for x, y in zip(lum, lum[1:]))


# ---- command line and bad input -------------------------------------------------------------------
def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_table_json_heatmap(tmp_path, capsys, sdxl_trio):
    paths, (a, b, _) = sdxl_trio
    png = tmp_path / "out.png"
    code, out, err = run(capsys, "compare", *paths[:2], "--heatmap", png, "--quiet")
    assert code == 0 and png.is_file() and f"wrote heatmap {png}" in err
    assert "A vs B: cosine similarity" in out and "A vs B: relative L2" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("IN04 "))
    cos, _ = expected(a, b, U + r"input_blocks\.4\.1\.transformer_blocks\.\d+\.attn2\.")
    assert line.split()[2] == f"{cos:.4f}"  # attn1, attn2, ...
    code, out, _ = run(capsys, "compare", *paths[:2], "--json")
    data = json.loads(out)
    assert data["format"] == "blockmerge-compare" and data["files"] == {"A": "A.safetensors", "B": "B.safetensors"}
    assert data["pairs"]["A vs B"]["cells"]["IN04"]["attn2"]["cosine"] == pytest.approx(cos, abs=1e-7)
    assert "attn2" not in data["pairs"]["A vs B"]["cells"]["IN00"]


def test_cli_bad_input_one_line(tmp_path, capsys, sdxl_trio, sd1_models):
    paths, _ = sdxl_trio
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(open(paths[1], "rb").read()[:-100])
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"PK\x03\x04 not a model" * 20)
    lora = tmp_path / "lora.safetensors"
    synth.write_lora(lora, "sdxl")
    cases = [
        ((paths[0], sd1_models[1]), "B.safetensors (B) is SD1.x but A.safetensors (A) is SDXL"),
        ((paths[0], tmp_path / "none.safetensors"), "model file not found"),
        ((paths[0], trunc), "trunc.safetensors"),
        ((paths[0], junk), "junk.safetensors is not a safetensors file"),
        ((paths[0], lora), "looks like a LoRA"),
        ((paths[0],), "compare takes 2 or 3 models, got 1"),
        ((*paths, paths[0]), "compare takes 2 or 3 models, got 4"),
        ((*paths[:2], "--heatmap", tmp_path / "x.jpg"), "does not end in .png"),
        ((*paths[:2], "--heatmap", tmp_path / "no" / "x.png"), "does not exist"),
    ]
    for argv, message in cases:
        code, out, err = run(capsys, "compare", *argv, "--quiet")
        assert code == 2 and message in err, err
        assert err.count("\n") == 1 and "Fix:" in err and "Traceback" not in err
    assert not (tmp_path / "x.jpg").exists()


def test_fuzz_damaged_files_are_one_error(tmp_path, sdxl_trio):
    """Cut or flipped bytes anywhere: a MergeError (or, if the damage is in tensor data, a result)."""
    paths, _ = sdxl_trio
    raw = open(paths[1], "rb").read()
    rng = np.random.default_rng(0)
    bad = tmp_path / "bad.safetensors"
    for i in range(40):
        data = bytearray(raw)
        if i % 2:
            data = data[: int(rng.integers(0, len(raw)))]
        else:
            for pos in rng.integers(0, min(len(raw), 4000), size=4):
                data[pos] = int(rng.integers(0, 256))
        bad.write_bytes(bytes(data))
        try:
            res = compare([paths[0], str(bad)])
        except MergeError as e:
            assert "\n" not in str(e) and "Fix:" in str(e)
            continue
        assert all(math.isfinite(s.cosine) or math.isnan(s.cosine) for s in res.pairs[0].cells.values())


def test_core_errors_are_the_merge_family(sdxl_trio, sd1_models):
    paths, _ = sdxl_trio
    with pytest.raises(ArchitectureError):
        compare([sd1_models[0], paths[0]])
    with pytest.raises(ModelFileError):
        compare([paths[0], paths[0] + ".missing.ckpt"])


def test_the_readme_example_command(tmp_path, capsys):
    """`python docs/compare_example.py OUT.png` (the README's picture): a PNG, and the L2 numbers the
    README quotes (≈ 1.41·w for a weight-sum weight w with an unrelated model)."""
    import importlib.util
    import os
    spec = importlib.util.spec_from_file_location("compare_example", os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "compare_example.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "h.png"
    assert mod.main(str(out)) == 0
    img = Image.open(out)
    assert img.format == "PNG" and img.size[0] > 800
    table = capsys.readouterr().out
    l2 = {ln.split()[0]: float(ln.split()[-1]) for ln in table.split("relative L2")[1].splitlines()[2:]
          if ln[:1].isalpha() and ln.split()[0] != "total"}
    weights = dict(zip(("BASE", *(f"IN{i:02d}" for i in range(9)), "M00", *(f"OUT{i:02d}" for i in range(9))),
                       map(float, mod.WEIGHTS.split(","))))
    for block, w in weights.items():
        if w == 0:
            assert l2[block] == 0.0
        else:
            assert l2[block] / w == pytest.approx(math.sqrt(2), rel=0.05), block


def test_pruned_sdxl_through_a_key_map(tmp_path, capsys):
    """A pruned SDXL against its base: by name the layers differ (a note says so); through the map each
    surviving layer is compared with the base layer it came from (numpy over the known selection)."""
    from tests.test_keymap import KEEP, P, prune
    base = synth.state_dict("sdxl", seed=3)
    pruned = prune(base)
    a, b = str(tmp_path / "pruned.safetensors"), str(tmp_path / "base.safetensors")
    save_tensors(a, pruned)
    save_tensors(b, base)
    res = compare([a, b])
    assert any("layers were compared by name; pass --key-map" in n for n in res.notes)
    assert main(["map", a, b, "-o", str(tmp_path / "m.json"), "--hash-cache", str(tmp_path / "h.json")]) == 0
    capsys.readouterr()
    res = compare([a, b], key_map=str(tmp_path / "m.json"))
    assert res.notes == []
    keys = [k for k in pruned if re.match(re.escape(P) + r"input_blocks\.7\.1\.transformer_blocks\.\d+\.attn1\.", k)]
    x = np.concatenate([pruned[k].double().numpy().ravel() for k in keys])
    src = [re.sub(r"transformer_blocks\.(\d+)\.", lambda m: f"transformer_blocks.{KEEP['input_blocks.7.1'][int(m.group(1))]}.", k)
           for k in keys]
    y = np.concatenate([base[k].double().numpy().ravel() for k in src])
    want = float(x @ y / np.sqrt((x @ x) * (y @ y)))
    assert res.pairs[0].cells[("IN07", "attn1")].cosine == pytest.approx(want, abs=1e-9) and want > 0.99
