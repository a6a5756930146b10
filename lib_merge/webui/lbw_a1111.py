"""Per-block LoRA strengths in A1111 1.10 through proxies (WEBUI.md §4, "Cleanest A1111 recipe").

For each active `Network` that needs block weights, a proxy takes its place in
`networks.loaded_networks`: a shallow copy named `NAME@lbw:DIGEST` whose `modules` dict holds
shallow copies of the modules with an instance `multiplier` of `ratio * original.multiplier()`.
The builtin's per-layer cache key holds the names, so a layer re-merges only when a digest changes;
the original `Network`, its modules and tensors are never written. Originals go back after each
batch, at the end and on unload, so the builtin's next activation finds them by name.

While proxies are in place, the builtin's hires-fix activation cannot find the originals by name;
with "keep in memory" on, they are lent to `networks.networks_in_memory` (the builtin's own memory
cache, trimmed by the builtin right after) so the file is not read again. Entries we lent are taken
back when the originals are restored.
"""
from __future__ import annotations

import copy
import sys
from typing import Any, Callable

from . import lbw_tags
from .lbw_tags import Use

ORIGINAL = "blockmerge_original"  # the attribute a proxy keeps its original in


def _networks() -> Any:
    mod = sys.modules.get("networks")
    return mod if mod is not None and hasattr(mod, "loaded_networks") else None


def _scaled(ratio: float, module: Any) -> float:
    return ratio * module.multiplier()


class A1111Applier:
    def __init__(self, keep_in_memory: Callable[[], bool]):
        self.keep_in_memory = keep_in_memory
        self._lent: dict[str, Any] = {}  # name -> original we put into networks_in_memory
        self._ratios: dict[tuple, tuple[dict[str, float], Any]] = {}  # keyed on names only, bounded
        self._proxies: dict[str, Any] = {}  # proxy name -> proxy, only those of the last install

    # ---- the job's hooks ------------------------------------------------------------------------
    def activate(self, p: Any, job: Any) -> None:
        """After an activation: proxies for step 1 of this pass."""
        self._install(job, job.phase)

    def process_batch(self, p: Any, job: Any) -> None:
        pass

    def before_sampling(self, p: Any, job: Any) -> None:
        pass

    def switch(self, p: Any, job: Any, phase: tuple[bool, ...]) -> None:
        self._install(job, phase)

    def restore(self, p: Any = None) -> None:
        nets = _networks()
        if nets is None:
            return
        loaded = nets.loaded_networks
        for i, net in enumerate(loaded):
            original = getattr(net, ORIGINAL, None)
            if original is not None:
                loaded[i] = original
        memory = getattr(nets, "networks_in_memory", None)
        for name, original in self._lent.items():
            if memory is not None and memory.get(name) is original:
                del memory[name]
        self._lent.clear()
        self._proxies.clear()  # hold no LoRA between generations

    def unload(self) -> None:
        self.restore()
        self._ratios.clear()
        self._proxies.clear()

    def model_changed(self) -> None:
        self._ratios.clear()
        self._proxies.clear()

    # ---- proxies --------------------------------------------------------------------------------
    def _install(self, job: Any, phase: tuple[bool, ...]) -> None:
        nets = _networks()
        if nets is None:
            return
        loaded = nets.loaded_networks
        pending = list(zip(job.uses, phase))
        previous, self._proxies = self._proxies, {}
        for i, net in enumerate(loaded):
            original = getattr(net, ORIGINAL, None) or net
            names = (original.name, getattr(original, "mentioned_name", None))
            k = next((j for j, (u, _) in enumerate(pending) if u.name in names), None)
            if k is None:
                loaded[i] = original
                continue
            use, unet_on = pending.pop(k)
            proxy = self._proxy(original, use, unet_on, job, previous)
            loaded[i] = proxy
            if proxy is not original:
                self._lend(nets, original)

    def _lend(self, nets: Any, original: Any) -> None:
        memory = getattr(nets, "networks_in_memory", None)
        if memory is None or not self.keep_in_memory() or original.name in memory:
            return
        memory[original.name] = original
        self._lent[original.name] = original

    def _module_ratios(self, original: Any, use: Use, job: Any) -> tuple[dict[str, float], Any]:
        key = (tuple(original.modules), use.tag, job.arch.id, job.presets_key, job.seed)
        hit = self._ratios.get(key)
        if hit is None:
            hit = lbw_tags.ratios_by_name(use.tag, list(original.modules), job)
            if len(self._ratios) >= 32:
                self._ratios.pop(next(iter(self._ratios)))
            self._ratios[key] = hit
        return hit

    def _proxy(self, original: Any, use: Use, unet_on: bool, job: Any,
               previous: dict[str, Any]) -> Any:
        ratios, block_ratios = self._module_ratios(original, use, job)
        job.note_seed(use, block_ratios)
        te_on = use.te_on
        final = {}
        for key, module in original.modules.items():
            is_te = "transformer" in key[:20]  # the builtin's own TE test (NetworkModule.multiplier)
            on = te_on if is_te else unet_on
            final[key] = ratios.get(key, 1.0) if on else 0.0
        if all(r == 1.0 for r in final.values()):
            return original
        name = f"{original.name}@lbw:" + lbw_tags.digest(
            original.name, getattr(original, "mtime", None), original.te_multiplier, original.unet_multiplier,
            tuple(sorted(block_ratios.blocks.items())), tuple((r.text, v) for r, v in block_ratios.rules),
            block_ratios.seed, te_on, unet_on)
        cached = previous.get(name)
        if cached is not None and getattr(cached, ORIGINAL, None) is original and \
                (cached.te_multiplier, cached.unet_multiplier, cached.dyn_dim) == \
                (original.te_multiplier, original.unet_multiplier, original.dyn_dim):
            self._proxies[name] = cached
            return cached
        proxy = copy.copy(original)
        proxy.name = name
        modules = {}
        for key, module in original.modules.items():
            r = final[key]
            if r == 1.0:
                modules[key] = module
                continue
            scaled = copy.copy(module)
            scaled.multiplier = _bind(r, module)
            modules[key] = scaled
        proxy.modules = modules
        setattr(proxy, ORIGINAL, original)
        self._proxies[name] = proxy
        return proxy


def _bind(ratio: float, module: Any) -> Callable[[], float]:
    return lambda: _scaled(ratio, module)
