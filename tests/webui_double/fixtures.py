"""pytest fixtures (`webui` for the three webuis, `a1111`, `forge`, `neo`) and measurements for the webui tests.

A test module imports the `*_fixture` functions; pytest knows them by their `name`."""
from __future__ import annotations

import pytest
import torch

from tests.webui_double.harness import Webui


@pytest.fixture(name="webui", params=["a1111", "forge", "neo"])
def webui_fixture(request, tmp_path):
    with Webui(request.param, tmp_path) as w:
        yield w


@pytest.fixture(name="a1111")
def a1111_fixture(tmp_path):
    with Webui("a1111", tmp_path) as w:
        yield w


@pytest.fixture(name="forge")
def forge_fixture(tmp_path):
    with Webui("forge", tmp_path) as w:
        yield w


@pytest.fixture(name="neo")
def neo_fixture(tmp_path):
    with Webui("neo", tmp_path) as w:
        yield w


def snapshot_key(flavor: str, target) -> tuple[str, str]:
    """(unet|te, the name the double's snapshots use) for a LoRA target (a checkpoint key)."""
    key = target.key
    if key.startswith("model.diffusion_model."):
        mod = key[len("model."):]
        return "unet", (mod if flavor in ("forge", "neo") else mod[:-len(".weight")].replace(".", "_"))
    if key.startswith("cond_stage_model.transformer."):
        rest = key[len("cond_stage_model."):]
        return "te", ("clip_l." + rest if flavor in ("forge", "neo") else rest[:-len(".weight")].replace(".", "_"))
    raise ValueError(key)


def delta(lora_sd: dict, target) -> torch.Tensor:
    up = lora_sd[target.name + ".lora_up.weight"].double()
    down = lora_sd[target.name + ".lora_down.weight"].double()
    alpha = float(lora_sd[target.name + ".alpha"])
    return (up.flatten(1) @ down.flatten(1)).reshape(target.shape) * (alpha / down.shape[0])


def strength(w: torch.Tensor, w0: torch.Tensor, d: torch.Tensor) -> float:
    """The s with W = W0 + s·ΔW (least squares), checking that nothing else changed."""
    diff = w.double() - w0.double()
    s = float((diff * d).sum() / (d * d).sum())
    assert torch.allclose(diff, s * d, atol=1e-4), "the change is not a multiple of this LoRA's delta"
    return s


def strengths(flavor: str, snap: dict, base: dict, lora_sd: dict, targets: list, part: str) -> dict[str, float]:
    out = {}
    for t in targets:
        kind, name = snapshot_key(flavor, t)
        if kind == part:
            out[t.key] = strength(snap[name], base[name], delta(lora_sd, t))
    return out
