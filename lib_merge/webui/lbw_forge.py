"""Per-block LoRA strengths in Forge and Forge Neo through new patchers (WEBUI.md §4, "Cleanest Forge recipe").

Forge Neo keeps the same storage (read in Neo's backend/patcher/base.py at 283cb2c4:
`add_patches(*, filename, patches, strength_patch, strength_model, online_mode)` files
`[strength_patch, value, strength_model, offset, function]` lists under the same 4-tuple key, and
`LoraLoader.refresh` in backend/patcher/lora.py 9bb88948 compares `str(list(lora_patches.keys()))`);
what differs is `value`: a Comfy weight adapter object (`LoRAAdapter`, comfy/lora.py 0cc5e9ea) whose
`calculate_weight(weight, key, strength, ...)` takes the entry's own strength. Only `entry[0]` is
scaled here, so adapters and tuples are treated alike and never looked into (LBW indexes into them
and fails: "'LoRAAdapter' object is not subscriptable", LBW #192).

The builtin leaves one entry per LoRA in `patcher.lora_patches`, keyed
`(filename, strength_patch, strength_model, online_mode)`, each a dict of parameter key -> list of
`[strength_patch, value, strength_model, offset, function]`. We clone the *current* patcher (other
scripts may have patched it first) and give the clone a new dict in the same order, where each
LoRA of ours is stored under `(filename, "S@lbw:DIGEST", strength_model, online_mode)` with new
lists of new entries whose strength is `entry[0] * ratio`. Nothing the builtin made is written:
`forge_objects_after_applying_lora` survives from one generation to the next untouched.
`LoraLoader.refresh` compares key lists, so equal weights never re-merge and changed weights
re-merge once. Keys of ours found on a patcher (ours, or a clone of ours made by another script)
are first mapped back to the builtin's originals, so weights are never applied twice.
"""
from __future__ import annotations

import logging
import sys
from typing import Any

from . import lbw_tags
from .lbw_tags import Use

log = logging.getLogger("lib_merge")
MARK = "@lbw:"


def _networks() -> Any:
    mod = sys.modules.get("networks")
    return mod if mod is not None and hasattr(mod, "loaded_networks") else None


_told: set[str] = set()


def _unknown_storage(patcher: Any) -> None:
    """A Forge whose patcher keeps no `lora_patches` dict (e.g. a Neo build on Comfy's ModelPatcher, which
    files patches by parameter only, in `patches`, with no LoRA they belong to): say so once, apply nothing."""
    kind = type(patcher).__name__
    if kind not in _told:
        _told.add(kind)
        log.error("LoRA block weight: this webui's %s keeps no lora_patches (a LoRA storage BlockMerge does not "
                  "know), so block weights are not applied; the LoRAs work at their plain strength. Fix: update "
                  "BlockMerge, or report your webui version", kind)


def _is_ours(key: Any) -> bool:
    return isinstance(key, tuple) and len(key) == 4 and isinstance(key[1], str) and MARK in key[1]


class Weighted(dict):
    """Our inner dict of one LoRA: remembers the builtin's key and dict it was made from, for exactly
    as long as a patcher holds it (no registry that would keep old LoRA tensors alive)."""
    __slots__ = ("orig_key", "orig_inner")


class ForgeApplier:
    def __init__(self) -> None:
        self._ratios: dict[tuple, tuple[dict[str, float], Any]] = {}  # keyed on names only, bounded

    # ---- the job's hooks ------------------------------------------------------------------------
    def activate(self, p: Any, job: Any) -> None:
        """After an activation: the text encoder for the conds that follow (setup_conds, hires)."""
        self._install_clip(p, job)

    def process_batch(self, p: Any, job: Any) -> None:
        self._install_clip(p, job)

    def before_sampling(self, p: Any, job: Any) -> None:
        self._install_clip(p, job)
        objects = p.sd_model.forge_objects
        objects.unet = self._weighted(objects.unet, job, job.phase, "unet")

    def switch(self, p: Any, job: Any, phase: tuple[bool, ...]) -> None:
        """Mid-sampling (start=/stop=): a clone with the new phase, merged in place right away."""
        objects = p.sd_model.forge_objects
        unet = self._weighted(objects.unet, job, phase, "unet")
        if unet is not objects.unet:
            objects.unet = unet
            unet.refresh_loras()

    def restore(self, p: Any = None) -> None:
        pass  # nothing of the builtin's was replaced; forge_objects is reset by processing itself

    def unload(self) -> None:
        self._ratios.clear()

    def model_changed(self) -> None:
        self.unload()

    # ---- patchers -------------------------------------------------------------------------------
    def _install_clip(self, p: Any, job: Any) -> None:
        objects = p.sd_model.forge_objects
        clip = objects.clip
        if clip is None:
            return
        patched = self._weighted(clip.patcher, job, None, "clip")
        if patched is not clip.patcher:
            new = clip.clone()
            new.patcher = patched
            objects.clip = new

    def _weighted(self, patcher: Any, job: Any, phase: tuple[bool, ...] | None, component: str) -> Any:
        """A clone of `patcher` with our weights for every LoRA of `job`, or `patcher` itself."""
        if patcher is None:
            return patcher
        if not isinstance(getattr(patcher, "lora_patches", None), dict):
            _unknown_storage(patcher)
            return patcher
        files = self._filenames(job.uses)
        pending = [(u, (u.te_on if component == "clip" else phase[i]), files.get(u.name))
                   for i, u in enumerate(job.uses)]
        new: dict = {}
        changed = False
        for key, inner in patcher.lora_patches.items():
            orig_key, orig_inner = self._original(key, inner)
            changed |= orig_key is not key
            k = None if _is_ours(orig_key) else self._match(pending, orig_key, component)
            if _is_ours(orig_key):
                log.warning("LoRA block weight: patch %s was not made here; it is kept as it is", orig_key[:2])
            if k is None:
                new[orig_key] = orig_inner
                continue
            use, on, _ = pending.pop(k)
            our_key, our_inner = self._reweigh(orig_key, orig_inner, use, on, job, component)
            changed |= our_key is not orig_key
            new[our_key] = our_inner
        if not changed:
            return patcher
        clone = patcher.clone()
        clone.lora_patches = new
        return clone

    @staticmethod
    def _original(key: Any, inner: dict) -> tuple[Any, dict]:
        if isinstance(inner, Weighted):
            return inner.orig_key, inner.orig_inner
        return key, inner

    @staticmethod
    def _match(pending: list, key: Any, component: str) -> int | None:
        if not (isinstance(key, tuple) and len(key) == 4):
            return None
        hits = [i for i, (u, _, fn) in enumerate(pending) if fn is not None and fn == key[0]]
        for i in hits:
            u = pending[i][0]
            want = u.tag.te if component == "clip" else u.tag.unet
            try:
                if float(key[1]) == float(want):
                    return i
            except (TypeError, ValueError):
                pass
        return hits[0] if hits else None

    @staticmethod
    def _filenames(uses: list[Use]) -> dict[str, str]:
        nets = _networks()
        out: dict[str, str] = {}
        if nets is None:
            return out
        for net in getattr(nets, "loaded_networks", []):
            disk = getattr(net, "network_on_disk", None)
            if disk is not None:
                out.setdefault(net.name, disk.filename)
        aliases = getattr(nets, "available_network_aliases", {})
        for u in uses:
            if u.name not in out and u.name in aliases:
                out[u.name] = aliases[u.name].filename
        return out

    def _param_ratios(self, inner: dict, use: Use, job: Any) -> tuple[dict[str, float], Any]:
        key = (tuple(inner), use.tag, job.arch.id, job.presets_key, job.seed)
        hit = self._ratios.get(key)
        if hit is None:
            hit = lbw_tags.ratios_by_name(use.tag, list(inner), job)
            if len(self._ratios) >= 32:
                self._ratios.pop(next(iter(self._ratios)))
            self._ratios[key] = hit
        return hit

    def _reweigh(self, key: tuple, inner: dict, use: Use, on: bool, job: Any,
                 component: str) -> tuple[tuple, dict]:
        ratios, block_ratios = self._param_ratios(inner, use, job)
        job.note_seed(use, block_ratios)
        final = {pk: (ratios.get(pk, 1.0) if on else 0.0) for pk in inner}
        if all(r == 1.0 for r in final.values()):
            return key, inner
        d = lbw_tags.digest(key[0], key[1], key[2], tuple(sorted(block_ratios.blocks.items())),
                            tuple((r.text, v) for r, v in block_ratios.rules), block_ratios.seed, on, component)
        our_key = (key[0], f"{key[1]}{MARK}{d}", key[2], key[3])
        # new containers of the same kinds (Forge and Neo store lists; a tuple stays a tuple); the patch
        # values (tuples in Forge, LoRAAdapter objects in Neo) are shared, never written
        our_inner = Weighted((pk, type(entries)(type(e)((e[0] * final[pk], *e[1:])) for e in entries))
                             for pk, entries in inner.items())
        our_inner.orig_key, our_inner.orig_inner = key, inner
        return our_key, our_inner
