from __future__ import annotations

import shutil

import pytest
import torch

from tests.synth import write_checkpoint


def pytest_configure(config):
    # tiny tensors: one intra-op thread is much faster on a loaded 2-core box
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _hash_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own hash cache, never the user's."""
    monkeypatch.setenv("BLOCKMERGE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def sd1_models(tmp_path_factory):
    """Paths of three tiny SD1 checkpoints (A, B, C) with the full real key set."""
    d = tmp_path_factory.mktemp("sd1")
    return [str(write_checkpoint(d / f"{n}.safetensors", "sd1", seed=i) and d / f"{n}.safetensors")
            for i, n in enumerate("ABC")]


@pytest.fixture(scope="session")
def sdxl_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("sdxl")
    return [str(write_checkpoint(d / f"{n}.safetensors", "sdxl", seed=10 + i) and d / f"{n}.safetensors")
            for i, n in enumerate("ABC")]


@pytest.fixture
def models(tmp_path, sd1_models):
    """A models folder with the tiny SD1 checkpoints A, B, C (UI tests; some files narrow it)."""
    d = tmp_path / "models"
    d.mkdir()
    for p in sd1_models:
        shutil.copy(p, d)
    return d


@pytest.fixture
def host(models):
    from lib_merge.ui.standalone import StandaloneHost  # imported here: the core tests need no UI
    return StandaloneHost(str(models))
