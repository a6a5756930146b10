"""ΔW of every LoRA algorithm, exact on tiny tensors, written out independently of the library."""
from __future__ import annotations

import pytest
import torch

from lib_merge.errors import ModelFileError
from lib_merge.io.safetensors_io import save_tensors
from lib_merge.lora import algos
from lib_merge.lora.lorafile import LoraFile, split_key


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: thread hand-off costs more than the work
    yield
    torch.set_num_threads(n)


def g(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed + sum(shape)))


def run(algo_id, params, shape):
    a = algos.find(frozenset(params))
    assert a is not None and a.id == algo_id
    return a.delta(params, shape)


def test_lora_linear_with_alpha():
    up, down = g(3, 2), g(2, 4)
    d, s = run("lora", {"up": up, "down": down, "alpha": torch.tensor(1.0)}, (3, 4))
    exp = torch.tensor([[sum(up[o, r] * down[r, i] for r in range(2)) for i in range(4)] for o in range(3)])
    torch.testing.assert_close(d, exp)
    assert s == 0.5


def test_lora_without_alpha_is_scale_one():
    _, s = run("lora", {"up": g(3, 2), "down": g(2, 4)}, (3, 4))
    assert s == 1.0


def test_lora_conv_1x1_and_3x3():
    up, down = g(3, 2, 1, 1), g(2, 4, 1, 1)
    d, _ = run("lora", {"up": up, "down": down}, (3, 4, 1, 1))
    torch.testing.assert_close(d[:, :, 0, 0], up[:, :, 0, 0] @ down[:, :, 0, 0])
    up, down = g(3, 2, 1, 1), g(2, 4, 3, 3)
    d, s = run("lora", {"up": up, "down": down, "alpha": torch.tensor(8.0)}, (3, 4, 3, 3))
    for h in range(3):
        for w in range(3):
            torch.testing.assert_close(d[:, :, h, w], up[:, :, 0, 0] @ down[:, :, h, w])
    assert s == 4.0


def test_locon_tucker():
    up, mid, down = g(3, 2, 1, 1), g(2, 2, 3, 3), g(2, 4, 1, 1)
    d, _ = run("lora", {"up": up, "mid": mid, "down": down}, (3, 4, 3, 3))
    for h in range(3):
        for w in range(3):
            torch.testing.assert_close(d[:, :, h, w], up[:, :, 0, 0] @ mid[:, :, h, w] @ down[:, :, 0, 0])


def test_loha_and_flattened_conv():
    p = {"hada_w1_a": g(3, 2), "hada_w1_b": g(2, 36), "hada_w2_a": g(3, 2, seed=1), "hada_w2_b": g(2, 36, seed=1),
         "alpha": torch.tensor(1.0)}
    d, s = run("loha", p, (3, 4, 3, 3))
    exp = (p["hada_w1_a"] @ p["hada_w1_b"]) * (p["hada_w2_a"] @ p["hada_w2_b"])
    torch.testing.assert_close(d, exp.reshape(3, 4, 3, 3))
    assert s == 0.5


def test_loha_tucker():
    t1, t2 = g(2, 2, 3, 3), g(2, 2, 3, 3, seed=2)
    w1a, w1b, w2a, w2b = g(2, 3), g(2, 4), g(2, 3, seed=3), g(2, 4, seed=3)
    d, _ = run("loha", {"hada_t1": t1, "hada_t2": t2, "hada_w1_a": w1a, "hada_w1_b": w1b,
                        "hada_w2_a": w2a, "hada_w2_b": w2b}, (3, 4, 3, 3))
    for h in range(3):
        for w in range(3):
            a = w1a.T @ t1[:, :, h, w] @ w1b
            b = w2a.T @ t2[:, :, h, w] @ w2b
            torch.testing.assert_close(d[:, :, h, w], a * b)


def test_lokr_low_rank_and_whole_factors():
    w1, w2a, w2b = g(2, 2), g(3, 2), g(2, 4)
    d, s = run("lokr", {"lokr_w1": w1, "lokr_w2_a": w2a, "lokr_w2_b": w2b, "alpha": torch.tensor(1.0)}, (6, 8))
    w2 = w2a @ w2b
    for a in range(2):
        for b in range(2):
            torch.testing.assert_close(d[a * 3:(a + 1) * 3, b * 4:(b + 1) * 4], w1[a, b] * w2)
    assert s == 0.5
    _, s = run("lokr", {"lokr_w1": w1, "lokr_w2": w2, "alpha": torch.tensor(4.0)}, (6, 8))
    assert s == 1.0  # whole factors are not scaled (the webuis' rule)


def test_lokr_conv():
    w1, w2 = g(2, 1), g(3, 4, 3, 3)
    d, _ = run("lokr", {"lokr_w1": w1, "lokr_w2": w2}, (6, 4, 3, 3))
    torch.testing.assert_close(d[:3], w1[0, 0] * w2)
    torch.testing.assert_close(d[3:], w1[1, 0] * w2)


def test_full_and_bias():
    diff, b = g(3, 4), g(3)
    a = algos.find(frozenset({"diff", "diff_b"}))
    d, s = a.delta({"diff": diff, "diff_b": b}, (3, 4))
    assert torch.equal(d, diff) and s == 1.0 and torch.equal(a.bias_delta({"diff": diff, "diff_b": b}), b)


def test_param_suffixes():
    assert split_key("lora_unet_x_to_q.lora_down.weight") == ("lora_unet_x_to_q", "down")
    assert split_key("unet.a.to_q.lora_B.weight") == ("unet.a.to_q", "up")
    assert split_key("unet.a.processor.to_q_lora.down.weight") == ("unet.a.processor.to_q_lora", "down")
    assert split_key("lora_te1_x.hada_w1_a") == ("lora_te1_x", "hada_w1_a")
    assert split_key("lora_unet_x.alpha") == ("lora_unet_x", "alpha")
    assert split_key("something.else") is None


@pytest.mark.parametrize("param,kind", [("dora_scale", "DoRA"), ("on_input", "IA3"), ("oft_blocks", "OFT")])
def test_refused_kinds_by_name(tmp_path, param, kind):
    path = tmp_path / "x.safetensors"
    name = "lora_unet_down_blocks_0_attentions_0_proj_in"
    tensors = {f"{name}.lora_down.weight": g(2, 8), f"{name}.lora_up.weight": g(8, 2),
               f"{name}.{param}": g(8)}
    save_tensors(str(path), tensors)
    with LoraFile.open(str(path), None) as lf:
        with pytest.raises(ModelFileError, match=f"is {kind}") as e:
            lf.check_supported()
    assert "Fix:" in str(e.value)
