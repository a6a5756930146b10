"""Install the webui double for one test, and take it out again.

`Webui(flavor, tmp)` puts the fake packages on sys.path (only for the test), gives the webui a data
folder under `tmp`, sets up the builtin LoRA extension, and offers helpers to add checkpoints and
LoRAs, load a model and run txt2img through the real hook order with BlockMerge's scripts loaded
the way the webui loads them. On exit every fake module and every `lib_merge.webui` module is
dropped, so `import modules` fails again and the next test starts clean.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
EXT_ROOT = os.path.dirname(os.path.dirname(HERE))  # the extension's root (the repository)
ROOTS = {"a1111": [os.path.join(HERE, "common"), os.path.join(HERE, "a1111")],
         "forge": [os.path.join(HERE, "common"), os.path.join(HERE, "forge")],
         # Neo's own files first; the rest is the Forge double (Neo keeps Forge's backend/ design)
         "neo": [os.path.join(HERE, "neo"), os.path.join(HERE, "common"), os.path.join(HERE, "forge")]}
_FAKE_TOP = ("modules", "modules_forge", "backend", "networks", "network", "extra_networks_lora", "lora_script",
             "double_engine", "lib_xyz",
             "double_models")


def _purge() -> None:
    for name in list(sys.modules):
        top = name.split(".")[0]
        if top in _FAKE_TOP or name.startswith("lib_merge.webui") or name.endswith(".py"):
            del sys.modules[name]
    lib = sys.modules.get("lib_merge")
    if lib is not None and hasattr(lib, "webui"):
        delattr(lib, "webui")


class Webui:
    def __init__(self, flavor: str, tmp: Any):
        self.flavor = flavor
        self.tmp = str(tmp)
        self.models_dir = os.path.join(self.tmp, "models", "Stable-diffusion")
        self.lora_dir = os.path.join(self.tmp, "models", "Lora")

    @property
    def is_forge(self) -> bool:
        """lllyasviel Forge or Forge Neo: the backend/ architecture."""
        return self.flavor in ("forge", "neo")

    # ---- lifetime -------------------------------------------------------------------------------
    def __enter__(self) -> "Webui":
        self._path = list(sys.path)
        self._env = os.environ.get("WEBUI_DOUBLE_DATA")
        _purge()
        os.makedirs(self.models_dir, exist_ok=True)
        os.makedirs(self.lora_dir, exist_ok=True)
        os.environ["WEBUI_DOUBLE_DATA"] = self.tmp
        sys.path[:0] = ROOTS[self.flavor]
        self.shared = importlib.import_module("modules.shared")
        if self.flavor == "neo":  # Neo's modules/shared_options.py: temp_dir defaults to <data_path>/tmp, not created
            self.shared.opts.data["temp_dir"] = os.path.join(self.tmp, "tmp")
        self.sd_models = importlib.import_module("modules.sd_models")
        self.processing = importlib.import_module("modules.processing")
        self.scripts = importlib.import_module("modules.scripts")
        self.script_callbacks = importlib.import_module("modules.script_callbacks")
        self.errors = importlib.import_module("modules.errors")
        self.errors.reported.clear()
        self.networks = importlib.import_module("networks")
        importlib.import_module("lora_script").install()
        if self.is_forge:
            self.mm = importlib.import_module("backend.memory_management")
            self.mm.current_loaded_models.clear()
            self.mm.loads.clear()
        from lib_merge.webui import detect
        detect.detect.cache_clear()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            from lib_merge.webui import detect
            detect.detect.cache_clear()
        finally:
            _purge()
            sys.path[:] = self._path
            if self._env is None:
                os.environ.pop("WEBUI_DOUBLE_DATA", None)
            else:
                os.environ["WEBUI_DOUBLE_DATA"] = self._env

    # ---- content --------------------------------------------------------------------------------
    def add_checkpoint(self, name: str, arch: str = "sd1", seed: int = 0, dtype: Any = None) -> dict:
        import torch
        from tests.synth import write_checkpoint
        sd = write_checkpoint(os.path.join(self.models_dir, name), arch, seed=seed, dtype=dtype or torch.float32)
        self.sd_models.list_models()
        return sd

    def add_lora(self, name: str, arch: str = "sd1", *, seed: int = 0, te: bool = True, conv: bool = False,
                 select=None) -> tuple[dict, list]:
        """A kohya LoRA (compvis-style UNet names, as SDXL files have them) for the tiny checkpoints."""
        from tests.synth import make_lora
        from lib_merge.io.safetensors_io import save_tensors
        sd, targets = make_lora(arch, seed=seed, te=te, conv=conv, unet_style="compvis", alpha=2.0, select=select)
        save_tensors(os.path.join(self.lora_dir, name + ".safetensors"), sd)
        self.networks.list_available_networks(self.lora_dir)
        return sd, targets

    def load(self, name: str) -> Any:
        info = self.sd_models.get_closet_checkpoint_match(name)
        self.shared.opts.data["sd_model_checkpoint"] = info.title
        if self.is_forge:
            importlib.import_module("modules_forge.main_entry").refresh_model_loading_parameters()
            self.sd_models.forge_model_reload()
        else:
            self.sd_models.load_model(info)
        return self.shared.sd_model

    # ---- BlockMerge's entry files, loaded as the webui loads them ------------------------------
    def load_scripts(self) -> dict[str, Any]:
        folder = os.path.join(EXT_ROOT, "scripts")
        return {f: self.scripts.load_script_file(EXT_ROOT, os.path.join(folder, f))
                for f in sorted(os.listdir(folder)) if f.endswith(".py")}

    def lbw_class(self) -> type:
        if getattr(self, "_lbw_class", None) is None:
            self.load_scripts()
            self._lbw_class = next(d.script_class for d in self.scripts.scripts_data
                                   if d.path.endswith("lora_block_weight.py"))
        return self._lbw_class

    def use_pictures(self) -> None:
        """Images become PIL pictures of the block strengths the model computed with (processing.picture)."""
        self.processing.picture_images = True
        self.processing.rendered.clear()

    def start_ui(self) -> None:
        """Startup as initialize_rest() and create_ui() do it: the webui's own scripts (xyz_grid.py)
        first, then the extension's, then on_before_ui."""
        from tests.webui_double.xyz import load_xyz
        load_xyz(self)
        self.load_scripts()
        self._lbw_class = [d.script_class for d in self.scripts.scripts_data
                           if d.path.endswith("lora_block_weight.py")][-1]
        self.script_callbacks.before_ui_callback()

    def reload_ui(self) -> None:
        """Settings > Reload UI: callbacks cleared, every script file runs again as a fresh module."""
        self.script_callbacks.script_unloaded_callback()
        self.script_callbacks.clear_callbacks()
        self.scripts.scripts_data.clear()
        importlib.import_module("lora_script").install()
        self.start_ui()

    def txt2img(self, prompt: str, *, enabled: bool = True, script: bool = True, lbw_args: Any = None,
                **kw: Any) -> Any:
        """`lbw_args`: the LoRA block-weight script's args after `enabled` (plot settings)."""
        p = self.processing.StableDiffusionProcessingTxt2Img(prompt=prompt, **kw)
        if script:
            runner, args = self.scripts.runner_with(self.lbw_class(), [enabled, *(lbw_args or [])])
            p.scripts, p.script_args = runner, args
        self.shared.state.begin(job="test")
        try:
            processed = self.processing.process_images(p)
        finally:
            self.shared.state.end()
        return p, processed
