"""Key maps for pruned SDXL models (SSD-1B, Vega, ...): which base layer each surviving layer came from.

The surviving transformer layers are discovered from the files (no hard-coded table): every container
`...transformer_blocks` whose layer count differs between PRUNED and BASE is matched by layer-level
cosine similarity (over all tensors of a layer) with the optimal one-to-one order-preserving
assignment (dynamic programming), not a per-layer argmax. Each tensor is read once.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field

import torch

from ..errors import MergeError
from ..io.models import open_model

FORMAT = "blockmerge-keymap"
LOW_MARGIN = 0.05  # a match this close to the runner-up is flagged
MIN_SIMILARITY = 0.3  # below this a surviving layer "matches nothing"
_LAYER = re.compile(r"^(.*\.transformer_blocks)\.(\d+)\.(.+)$")
_CHUNK = 1 << 22


class KeyMapError(MergeError):
    """A key map that cannot be made or used."""


@dataclass
class LayerMatch:
    pruned: str  # e.g. model.diffusion_model.input_blocks.7.1.transformer_blocks.1
    base: str
    similarity: float
    margin: float  # similarity minus the best other base layer's


@dataclass
class KeyMap:
    pruned_name: str
    base_name: str
    pruned_sha256: str | None
    base_sha256: str | None
    layers: list[LayerMatch] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def prefix_map(self) -> dict[str, str]:
        return {m.pruned + ".": m.base + "." for m in self.layers}

    def to_base(self, key: str) -> str:
        """The BASE-side key name of PRUNED's `key` (unchanged outside the mapped layers)."""
        m = _LAYER.match(key)
        if m:
            p = f"{m.group(1)}.{m.group(2)}."
            hit = self.prefix_map().get(p)
            if hit is not None:
                return hit + m.group(3)
        return key

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": 1,
                "pruned": {"name": self.pruned_name, "sha256": self.pruned_sha256},
                "base": {"name": self.base_name, "sha256": self.base_sha256},
                "layers": [{"pruned": m.pruned, "base": m.base, "similarity": round(m.similarity, 6),
                            "margin": round(m.margin, 6)} for m in self.layers],
                "warnings": list(self.warnings)}

    def digest(self) -> str:
        import hashlib
        body = json.dumps({"layers": [[m.pruned, m.base] for m in self.layers]}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()


def _layers(keys) -> dict[str, dict[int, list[str]]]:
    """{container: {layer index: [suffixes]}} of every `...transformer_blocks.N.*` key."""
    out: dict[str, dict[int, list[str]]] = {}
    for k in keys:
        m = _LAYER.match(k)
        if m:
            out.setdefault(m.group(1), {}).setdefault(int(m.group(2)), []).append(m.group(3))
    return out


def _dot_sq(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float]:
    """(a.b, a.a, b.b) in float64 accumulation over float32 chunks."""
    d = na = nb = 0.0
    for s in range(0, a.numel(), _CHUNK):
        x = a[s:s + _CHUNK].float()
        y = b[s:s + _CHUNK].float()
        d += float(torch.dot(x, y))
        na += float(torch.dot(x, x))
        nb += float(torch.dot(y, y))
    return d, na, nb


def _read(src, key: str) -> torch.Tensor:
    return src.get(key).reshape(-1)


def similarity_matrix(psrc, bsrc, container: str, p_idx: list[int], b_idx: list[int],
                      suffixes: list[str]) -> list[list[float]]:
    """S[i][j] = cosine of pruned layer p_idx[i] and base layer b_idx[j] over all common tensors.

    Per tensor name, the pruned copies are held (small: one tensor per surviving layer) while each
    base copy is read once and dotted with all of them."""
    dots = [[0.0] * len(b_idx) for _ in p_idx]
    pn = [0.0] * len(p_idx)
    bn = [0.0] * len(b_idx)
    for suf in suffixes:
        held = [_read(psrc, f"{container}.{i}.{suf}") for i in p_idx]
        for j, bi in enumerate(b_idx):
            bt = _read(bsrc, f"{container}.{bi}.{suf}")
            for i, pt in enumerate(held):
                if pt.numel() != bt.numel():
                    raise KeyMapError(f"{container}.{p_idx[i]}.{suf} has another shape than in the base model",
                                      "give the base model PRUNED was made from (same architecture, same widths)")
                d, na, nb = _dot_sq(pt, bt)
                dots[i][j] += d
                if j == 0:
                    pn[i] += na
                if i == 0:
                    bn[j] += nb
            del bt
        del held
    return [[dots[i][j] / math.sqrt(pn[i] * bn[j]) if pn[i] > 0 and bn[j] > 0 else 0.0
             for j in range(len(b_idx))] for i in range(len(p_idx))]


def assign(S: list[list[float]]) -> list[int]:
    """The increasing assignment i -> j(i) (j strictly increasing) with the largest total similarity."""
    n, m = len(S), len(S[0]) if S else 0
    if n > m:
        raise ValueError("more pruned layers than base layers")
    NEG = -math.inf
    best = [[NEG] * (m + 1) for _ in range(n + 1)]
    take = [[False] * (m + 1) for _ in range(n + 1)]
    for j in range(m + 1):
        best[0][j] = 0.0
    for i in range(1, n + 1):
        for j in range(i, m + 1):
            skip = best[i][j - 1]
            use = best[i - 1][j - 1] + S[i - 1][j - 1]
            if use >= skip:
                best[i][j], take[i][j] = use, True
            else:
                best[i][j] = skip
    out = [0] * n
    i, j = n, m
    while i > 0:
        if take[i][j]:
            out[i - 1] = j - 1
            i -= 1
        j -= 1
    return out


def build(pruned_path: str, base_path: str, *, hashes: tuple[str | None, str | None] = (None, None),
          progress=None) -> KeyMap:
    psrc, bsrc = open_model(pruned_path), open_model(base_path)
    try:
        pl, bl = _layers(psrc.tensors), _layers(bsrc.tensors)
        km = KeyMap(os.path.basename(pruned_path), os.path.basename(base_path), *hashes)
        if not bl:
            raise KeyMapError(f"{os.path.basename(base_path)} has no transformer layers",
                              "give an SDXL base model as BASE")
        extra = sorted(set(pl) - set(bl))
        if extra:
            raise KeyMapError(f"{extra[0]} of {km.pruned_name} is not in {km.base_name}",
                              "give the base model PRUNED was made from (e.g. SDXL base 1.0)")
        todo = [c for c in sorted(pl) if sorted(pl[c]) != sorted(bl[c])]
        if not todo:
            raise KeyMapError(f"{km.pruned_name} has the same transformer layers as {km.base_name}; "
                              "it is not pruned", "merge it without --key-map")
        for n, c in enumerate(todo):
            p_idx, b_idx = sorted(pl[c]), sorted(bl[c])
            if len(p_idx) > len(b_idx):
                raise KeyMapError(f"{c} has {len(p_idx)} layers in {km.pruned_name} but {len(b_idx)} in "
                                  f"{km.base_name}", "give as BASE the full model PRUNED was made from")
            sufs = sorted(set(pl[c][p_idx[0]]) & set(bl[c][b_idx[0]]))
            S = similarity_matrix(psrc, bsrc, c, p_idx, b_idx, sufs)
            js = assign(S)
            for i, j in enumerate(js):
                others = [S[i][k] for k in range(len(b_idx)) if k != j]
                margin = S[i][j] - max(others) if others else 1.0
                m = LayerMatch(f"{c}.{p_idx[i]}", f"{c}.{b_idx[j]}", S[i][j], margin)
                if m.similarity < MIN_SIMILARITY:
                    raise KeyMapError(f"{m.pruned} of {km.pruned_name} matches no layer of {km.base_name} "
                                      f"(best cosine {max(S[i]):.3f})",
                                      "give as BASE the model PRUNED was distilled from (SDXL base 1.0 for SSD-1B/Vega)")
                if margin < LOW_MARGIN:
                    km.warnings.append(f"{m.pruned} -> {m.base}: margin {margin:.3f} to the next best layer "
                                       "is low; the match is uncertain")
                km.layers.append(m)
            if progress:
                progress(n + 1, len(todo))
        return km
    finally:
        psrc.close()
        bsrc.close()


def format_table(km: KeyMap) -> str:
    pre = "model.diffusion_model."
    rows = [("pruned layer", "base layer", "similarity", "margin")]
    for m in km.layers:
        rows.append((m.pruned.removeprefix(pre), m.base.removeprefix(pre), f"{m.similarity:.4f}",
                     f"{m.margin:.4f}" + (" LOW" if m.margin < LOW_MARGIN else "")))
    w = [max(len(r[k]) for r in rows) for k in range(4)]
    lines = ["  ".join(r[k].ljust(w[k]) for k in range(4)).rstrip() for r in rows]
    lines += [f"warning: {x}" for x in km.warnings]
    return "\n".join(lines)


def load(path: str) -> KeyMap:
    """Read a map file; a corrupt one is a one-line error naming the file."""
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except OSError as e:
        raise KeyMapError(f"cannot read key map {name} ({e.strerror})", "check the path") from None
    except ValueError as e:
        raise KeyMapError(f"key map {name} is not valid JSON ({e})",
                          "make it again with: python -m lib_merge map PRUNED BASE -o MAP.json") from None
    try:
        if d.get("format") != FORMAT:
            raise KeyError("format")
        km = KeyMap(d["pruned"]["name"], d["base"]["name"], d["pruned"].get("sha256"), d["base"].get("sha256"),
                    [LayerMatch(str(x["pruned"]), str(x["base"]), float(x["similarity"]), float(x["margin"]))
                     for x in d["layers"]], [str(w) for w in d.get("warnings", [])])
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise KeyMapError(f"key map {name} is not a blockmerge key map (field {e} missing or wrong)",
                          "make it again with: python -m lib_merge map PRUNED BASE -o MAP.json") from None
    return km


def check_for(km: KeyMap, pruned_sha: str | None, base_sha: str | None, map_name: str) -> None:
    """A map made for other files is refused, naming which file differs."""
    for role, want, got in (("PRUNED", km.pruned_sha256, pruned_sha), ("BASE", km.base_sha256, base_sha)):
        if want and got and want != got:
            raise KeyMapError(f"key map {map_name} was made for another {role} file "
                              f"({(km.pruned_name if role == 'PRUNED' else km.base_name)}, sha256 {want[:10]})",
                              "make a map for these files: python -m lib_merge map PRUNED BASE -o MAP.json")


def find_map(name: str, folders: list[str]) -> str:
    """The key map file `name` (a path, or a file name looked up in `folders` in order)."""
    if os.path.isabs(name) or os.sep in name or (os.altsep and os.altsep in name):
        if os.path.isfile(name):
            return name
        raise KeyMapError(f"--key-map {name} not found", "check the path, or make the map with: "
                          "python -m lib_merge map PRUNED BASE -o MAP.json")
    for folder in folders:
        cand = os.path.join(folder, name)
        if os.path.isfile(cand):
            return cand
    raise KeyMapError(f"--key-map {name} not found in {', '.join(folders) or 'no folder'}",
                      "put the map next to the models, or make it with: python -m lib_merge map PRUNED BASE -o MAP.json")


def _map_files(folders: list[str], hidden: bool):
    """(file name, path) of every blockmerge key map in `folders`, in folder then name order."""
    for folder in folders:
        try:
            entries = sorted(os.listdir(folder))
        except OSError:
            continue
        for n in entries:
            if not n.lower().endswith(".json") or (n.startswith(".") and not hidden):
                continue
            path = os.path.join(folder, n)
            try:
                if os.path.getsize(path) > 4 << 20:
                    continue
                with open(path, encoding="utf-8") as f:
                    if json.load(f).get("format") == FORMAT:
                        yield n, path
            except (OSError, ValueError, AttributeError):
                continue


def list_maps(folders: list[str]) -> list[str]:
    """File names of the key maps in `folders` (the first folder wins a name), for a picker. The hidden
    cached copies (`.blockmerge-keymap-*.json`) are left out: they duplicate a map the user named."""
    names: list[str] = []
    for n, _ in _map_files(folders, hidden=False):
        if n not in names:
            names.append(n)
    return names


def find_recorded(name: str, digest: str, folders: list[str], given: str | None = None) -> str:
    """The key map a recipe was merged through (for replay): `given` if it is that map, else the file
    `name` in `folders`, else any map there (the cached copies too) with the recorded hash."""
    if given:
        km = load(given)
        if digest and km.digest() != digest:
            raise KeyMapError(f"--key-map {os.path.basename(given)} is another map than the one the recipe used "
                              f"(map hash {km.digest()[:12]}, recorded {digest[:12]})",
                              f"give the map {name} the file was merged through")
        return given
    named = [p for f in folders for p in [os.path.join(f, name)] if os.path.isfile(p)]
    for path in named + [p for _, p in _map_files(folders, hidden=True) if p not in named]:
        try:
            if not digest or load(path).digest() == digest:
                return path
        except KeyMapError:
            continue
    raise KeyMapError(f"the recipe was merged through key map {name} (map hash {digest[:12]}), which is not in "
                      f"{', '.join(folders)}",
                      f"put {name} next to model A, or pass --key-map MAP.json (python -m lib_merge map "
                      "PRUNED BASE -o MAP.json makes it again)")


def cache_path(folder: str, pruned_sha: str, base_sha: str) -> str:
    """Where a map for this pair is cached, next to the models."""
    return os.path.join(folder, f".blockmerge-keymap-{pruned_sha[:16]}-{base_sha[:16]}.json")


__all__ = ["KeyMap", "LayerMatch", "KeyMapError", "build", "assign", "load", "format_table", "check_for",
           "cache_path", "find_map", "list_maps", "find_recorded"]


def remap_names(tensors: dict, km: KeyMap) -> dict:
    """BASE-side header seen under PRUNED's names: mapped layers renamed, base layers no survivor came
    from left out, every other key unchanged. Used for B and C of a merge with --key-map."""
    inverse = {m.base + ".": m.pruned + "." for m in km.layers}
    containers = {m.pruned.rsplit(".", 1)[0] for m in km.layers}
    out = {}
    for k, v in tensors.items():
        m = _LAYER.match(k)
        if m and m.group(1) in containers:
            p = inverse.get(f"{m.group(1)}.{m.group(2)}.")
            if p is None:
                continue
            k = p + m.group(3)
        out[k] = v
    return out


def check_plan(recipe, heads: list) -> None:
    """Engine hook after the plan (so a wrong architecture is named first): without a key map the
    inputs must have the same transformer layers."""
    if not getattr(recipe, "key_map", ""):
        require_same_layers([h for h, _ in heads], [os.path.basename(p) for p in recipe.models])


def require_same_layers(headers: list[dict], names: list[str]) -> None:
    """Without a map, a pruned model merged with a full one is refused at the first mismatched layer."""
    first = _layers(headers[0])
    for h, n in zip(headers[1:], names[1:]):
        other = _layers(h)
        for c in sorted(set(first) | set(other)):
            a, b = sorted(first.get(c, {})), sorted(other.get(c, {}))
            if a != b:
                raise KeyMapError(
                    f"{c.removeprefix('model.diffusion_model.')} has {len(a)} transformer layers in {names[0]} "
                    f"but {len(b)} in {n} (a pruned SDXL such as SSD-1B or Vega)",
                    f"make a key map with: python -m lib_merge map {names[0] if len(a) < len(b) else n} "
                    "SDXL_BASE -o map.json, then merge with --key-map map.json")


def apply_to_headers(recipe, heads: list) -> list:
    """Engine hook: headers of B and C through the recipe's key map (unchanged without one)."""
    if not getattr(recipe, "key_map", ""):
        return heads
    km = load(recipe.key_map)
    return heads[:1] + [(remap_names(h, km), m) for h, m in heads[1:]]


def open_sources(recipe, paths: list[str], open_model, hashes: list[str], recorded: dict,
                 name: str | None = None) -> list:
    """Engine hook: open the inputs; with a key map, check it was made for model A and read B and C
    through it (the map's hash goes into the recipe so replay uses the same map)."""
    km = load(recipe.key_map) if getattr(recipe, "key_map", "") else None
    if km is not None:
        check_for(km, hashes[0] if hashes else None, None, os.path.basename(recipe.key_map))
        recorded["key_map"] = name or os.path.basename(recipe.key_map)
        recorded["key_map_sha256"] = km.digest()
    sources = [open_model(p) for p in paths]
    if km is not None:
        for s in sources[1:]:
            if not hasattr(s, "read_bytes"):
                for x in sources:
                    x.close()
                raise KeyMapError(f"{os.path.basename(s.path)} is not a .safetensors file",
                                  "convert it to .safetensors to merge through a key map")
            s.tensors = remap_names(s.tensors, km)
    return sources
