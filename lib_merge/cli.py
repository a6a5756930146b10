"""`python -m lib_merge`: merge, inspect, replay, presets, lora ... — thin over the library.

Every user mistake is a MergeError: printed as one line on stderr, exit status 2, no traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence

from . import __version__
from .cli_support import tqdm_progress
from .errors import MergeError, ParseError

# The output precisions (= merge.recipe.DTYPES), spelled here so `--help` does not import torch.
DTYPES = ("keep", "fp16", "bf16", "fp32", "fp8_e4m3fn", "fp8_e5m2")
EXIT_USER = 2
EXIT_CANCEL = 130
EXIT_TERM = 143  # 128 + SIGTERM, as a shell reports a process the signal ended


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so the same clean-up as Ctrl-C runs (temp file removed)."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _text_or_file(value: str | None) -> str:
    if value and value.startswith("@"):
        path = value[1:]
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except OSError:
            raise ParseError(f"cannot read elemental file {path}", "check the path after @") from None
    return value or ""


def _parse_range(text: str) -> tuple[float, float]:
    from .merge.weights import number
    parts = text.split(",")
    if len(parts) != 2:
        raise ParseError(f"--x-range {text!r} needs two numbers", "write LOW,HIGH such as 0,1")
    lo, hi = (number(p, "--x-range") for p in parts)
    return lo, hi


def _check_inputs_cheaply(args: argparse.Namespace) -> None:
    """The mistakes found without torch, so their one line comes before the ~1-2 s torch import."""
    from .errors import ModelFileError
    if args.calc == "self" and len(args.models) > 1:
        raise MergeError("--calc self uses model A only", "drop models B and C")
    for path in args.models:
        if not os.path.isfile(path):
            raise ModelFileError(f"model file not found: {path}", "check the path and the models folder")
    if not args.output.lower().endswith(".safetensors") and not args.ckpt:
        raise MergeError(f"output {args.output} does not end in .safetensors",
                         "name it NAME.safetensors (or pass --ckpt to write a legacy .ckpt)")


def cmd_merge(args: argparse.Namespace) -> int:
    _check_inputs_cheaply(args)
    from .merge.engine import merge
    from .io.hashing import HashCache
    from .merge.recipe import Recipe

    recipe = Recipe(
        models=tuple(args.models), mode=args.mode, calc=args.calc, alpha=args.alpha,
        beta=args.beta, gamma=args.gamma, alpha_blocks=args.alpha_blocks or "",
        beta_blocks=args.beta_blocks or "", elemental=_text_or_file(args.elemental),
        adjust=args.adjust or "", include=args.include or "", exclude=args.exclude or "",
        merge_vae=args.merge_vae, dtype=args.dtype, seed=args.seed,
        x_range=_parse_range(args.x_range) if args.x_range else (0.0, 1.0), prune=args.prune, key_map=args.key_map or "",
        device=args.device, presets_file=args.presets or "", allow_extreme=args.allow_extreme)
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise MergeError("--device cuda was given but no CUDA device is available", "use --device cpu")
    cache = HashCache(args.hash_cache) if args.hash_cache else HashCache()
    with tqdm_progress(args.quiet) as progress:
        if args.ckpt:
            result = _merge_ckpt(recipe, args, progress, cache)
        else:
            result = merge(recipe, args.output, overwrite=args.overwrite, progress=progress, hash_cache=cache)
    plan = result.plan
    if not args.quiet:
        for note in plan.notes:
            print(f"note: {note}", file=sys.stderr)
    # the one-line result stays with --quiet (which hides the bars and notes)
    print(f"{plan.method.label} of {plan.arch.label}: {plan.n_merged} of {len(plan.keys)} keys merged "
          f"in {result.seconds:.1f} s -> {result.output}")
    return 0


def _merge_ckpt(recipe, args, progress, cache):
    """Legacy .ckpt output, on explicit request only: merged in memory, then pickled atomically."""
    import torch

    from .merge.engine import merge
    from .io.atomic import atomic_write, check_output
    if not args.output.lower().endswith(".ckpt"):
        raise MergeError(f"--ckpt output {args.output} does not end in .ckpt", "name it NAME.ckpt")
    check_output(args.output, args.overwrite, recipe.models)  # before the work, not after
    result = merge(recipe, None, progress=progress, hash_cache=cache)
    with atomic_write(args.output, args.overwrite, inputs=recipe.models) as f:
        torch.save({"state_dict": result.state_dict, "blockmerge_metadata": result.metadata}, f)
    result.output = args.output
    return result


def cmd_inspect(args: argparse.Namespace) -> int:
    from .errors import ArchitectureError
    from .merge.inspect import describe
    try:
        report = describe(args.file)
    except ArchitectureError as e:
        if "looks like a LoRA" not in str(e):
            raise
        import dataclasses

        from .lora.inspect import format_report as format_lora, inspect_lora
        lora = inspect_lora(args.file)
        print(json.dumps(dataclasses.asdict(lora), indent=2, default=str) if args.json else format_lora(lora))
        return 0
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        from .merge.inspect import format_report
        print(format_report(report))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .io.hashing import HashCache
    from .merge.replay import replay
    cache = HashCache(args.hash_cache) if args.hash_cache else HashCache()
    with tqdm_progress(args.quiet) as progress:
        result = replay(args.merged, args.output, models_dir=args.models_dir, overwrite=args.overwrite,
                        progress=progress, hash_cache=cache, key_map=args.key_map)
    print(f"rebuilt {result.output} from the recipe in {os.path.basename(args.merged)}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from .arch import ARCHITECTURES
    from .merge.presets import PresetBook
    from .merge.weights import parse_block_weights
    book = PresetBook.from_file(args.presets)
    arch = ARCHITECTURES[args.arch]
    for name in book.names():
        toks = book.lookup(name, arch.blocks)
        if toks is None:
            continue
        try:
            bw = parse_block_weights(name, arch, base_default=0.0, presets=book, what=name)
            shown = ",".join(f"{v:.4g}" for v in bw.values)
        except MergeError:
            shown = ",".join(toks)
        print(f"{name}\t{shown}")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from .io.atomic import clean_partials, stale_partials
    total = 0
    for folder in args.folders or ["."]:
        if not os.path.isdir(folder):
            raise MergeError(f"{folder} is not a folder", "give the folder your merges are written to")
        if args.dry_run:
            for p in stale_partials(folder):
                print(f"would remove {p} ({os.path.getsize(p) / 1e9:.2f} GB)")
            continue
        total += len(clean_partials(folder))
    if not args.dry_run:
        print(f"removed {total} stale partial file(s)" if total else "no stale partial files")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """The merge tab in a local web page (needs gradio 3.41 or 4.x; imported only here)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        from .ui.standalone import serve
    except ImportError as e:
        raise MergeError(f"the ui needs gradio, which cannot be imported ({e})",
                         "pip install -r requirements-ui.txt (gradio 4.40.0, pinned), or use a webui's Python") from None
    serve(args.models_dir, port=args.port, output_dir=args.output_dir, data_dir=args.data_dir)
    return 0


def cmd_map(args) -> int:
    from .io.hashing import HashCache
    from .merge import keymap
    for p in (args.pruned, args.base):
        if not os.path.isfile(p):
            raise MergeError(f"model file {p} not found", "check the path")
    cache = HashCache(args.hash_cache)
    hp, hb = cache.sha256(args.pruned), cache.sha256(args.base)
    cached = keymap.cache_path(os.path.dirname(os.path.abspath(args.pruned)), hp, hb)
    if os.path.isfile(cached):
        km = keymap.load(cached)
        keymap.check_for(km, hp, hb, os.path.basename(cached))
        print(f"(cached map {cached})", file=sys.stderr)
    else:
        km = keymap.build(args.pruned, args.base, hashes=(hp, hb))
        try:
            with open(cached, "w", encoding="utf-8") as f:
                json.dump(km.to_json(), f, indent=1)
        except OSError:
            pass  # a read-only models folder only loses the cache
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(km.to_json(), f, indent=1)
    print(keymap.format_table(km))
    print(f"wrote {args.output} ({len(km.layers)} layers, map hash {km.digest()[:12]})")
    return 0


def cmd_compare(args) -> int:
    if not 2 <= len(args.models) <= 3:
        raise MergeError(f"compare takes 2 or 3 models, got {len(args.models)}", "give A B or A B C")
    for p in args.models:
        if not os.path.isfile(p):
            raise MergeError(f"model file not found: {p}", "check the path and the models folder")
    if args.heatmap:
        folder = os.path.dirname(os.path.abspath(args.heatmap))
        if not args.heatmap.lower().endswith(".png"):
            raise MergeError(f"--heatmap {args.heatmap} does not end in .png", "name it NAME.png")
        if not os.path.isdir(folder):
            raise MergeError(f"--heatmap folder {folder} does not exist", "create it or give another path")
    from .merge.compare import compare, format_table
    with tqdm_progress(args.quiet or args.json) as progress:
        result = compare(args.models, progress=progress, key_map=args.key_map)
    if args.heatmap:  # before the table: `... | head` must not lose the picture
        from .xy.heatmap import draw_heatmap
        try:
            draw_heatmap(result).save(args.heatmap)
        except OSError as e:
            raise MergeError(f"cannot write --heatmap {args.heatmap} ({e.strerror or e})",
                             "check the folder's permissions and free space") from None
        print(f"wrote heatmap {args.heatmap}", file=sys.stderr)
    print(json.dumps(result.to_json(), indent=1) if args.json else format_table(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lib_merge", description="Block-weighted Stable Diffusion merging.")
    p.add_argument("--version", action="version", version=f"blockmerge {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("merge", help="merge checkpoints block by block")
    m.add_argument("models", nargs="+", metavar="MODEL", help="A [B [C]]: .safetensors (or .ckpt) files")
    m.add_argument("-o", "--output", required=True, help="output .safetensors file")
    m.add_argument("--mode", choices=("weight_sum", "add_difference", "triple_sum", "sum_twice"), default=None,
                   help="default weight_sum, or the mode the calc mode works with")
    m.add_argument("--calc", default="normal", choices=("normal", "cosine_a", "cosine_b", "train_difference",
                                                        "smooth_add", "extract", "tensor", "tensor2", "self"))
    m.add_argument("--alpha", type=float, default=None, help="default 0.5 (1.0 with --calc self)")
    m.add_argument("--beta", type=float, default=0.25)
    m.add_argument("--gamma", type=float, default=0.3, help="extract's sharpness (>= 0)")
    m.add_argument("--alpha-blocks", metavar="SPEC", help="weights BASE first (26 SD1/SD2, 20 SDXL) or a preset")
    m.add_argument("--beta-blocks", metavar="SPEC")
    m.add_argument("--elemental", metavar="TEXT|@FILE", help="lines BLOCKS:ELEMENTS:RATIO")
    m.add_argument("--adjust", metavar="\"8 numbers\"", help="IN,OUT,OUT2,CONT,BRI,COL1,COL2,COL3")
    g = m.add_mutually_exclusive_group()
    g.add_argument("--include", metavar="SPEC", help="merge only these blocks / key parts / VAE / ADJUST")
    g.add_argument("--exclude", metavar="SPEC", help="keep A for these blocks / key parts / VAE / ADJUST")
    m.add_argument("--merge-vae", action="store_true", help="merge the VAE too (default: keep A's)")
    m.add_argument("--dtype", choices=DTYPES, default="keep")
    m.add_argument("--seed", type=int, help="seed for R/U/X random weights (recorded for replay)")
    m.add_argument("--x-range", metavar="LOW,HIGH", help="range of X random weights (default 0,1)")
    m.add_argument("--presets", metavar="FILE", help="your presets file (NAME<tab or :>values lines)")
    m.add_argument("--prune", action="store_true", help="keep only UNet, text encoders and VAE")
    m.add_argument("--key-map", metavar="MAP.json", help="pruned SDXL A (SSD-1B, Vega): read B and C through "
                                                         "this map (python -m lib_merge map)")
    m.add_argument("--overwrite", action="store_true", help="replace an existing output file (never an input)")
    m.add_argument("--allow-extreme", action="store_true", help="accept weights outside [-10, 10]")
    m.add_argument("--ckpt", action="store_true", help="write a legacy pickled .ckpt instead")
    m.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    m.add_argument("--hash-cache", metavar="FILE", help="hash cache file (default ~/.cache/blockmerge)")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.set_defaults(func=cmd_merge)

    i = sub.add_parser("inspect", help="architecture, blocks, dtype and recipe of a model file")
    i.add_argument("file")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_inspect)

    r = sub.add_parser("replay", help="rebuild a merged file from its own recipe",
                       description="Rebuild a merged model from the recipe stored in its metadata: the same "
                                   "inputs (found by SHA-256) and settings give the same file.")
    r.add_argument("merged", metavar="MERGED", help="a .safetensors file written by blockmerge (holds the recipe)")
    r.add_argument("-o", "--output", required=True, help="where to write the rebuilt .safetensors file")
    r.add_argument("--models-dir", metavar="DIR", help="where to look for the input models (by hash)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing output file (never an input)")
    r.add_argument("--key-map", metavar="MAP.json", help="the key map the merge used, if it is not next to the "
                                                         "models (found there by name or by its recorded hash)")
    r.add_argument("--hash-cache", metavar="FILE", help="hash cache file (default ~/.cache/blockmerge)")
    r.add_argument("--quiet", action="store_true", help="no progress bar (the result line stays)")
    r.set_defaults(func=cmd_replay)

    pr = sub.add_parser("presets", help="list block-weight presets")
    pr.add_argument("--arch", choices=("sd1", "sd2", "sdxl"), default="sd1")
    pr.add_argument("--presets", metavar="FILE")
    pr.set_defaults(func=cmd_presets)

    u = sub.add_parser("ui", help="the merge tab in your browser, without a webui (127.0.0.1 only)")
    u.add_argument("--models-dir", required=True, metavar="DIR", help="folder of .safetensors / .ckpt models")
    u.add_argument("--output-dir", metavar="DIR", help="where merges are saved (default: the models folder)")
    u.add_argument("--data-dir", metavar="DIR", help="history and presets (default ~/.local/share/blockmerge)")
    u.add_argument("--port", type=int, default=7870, help="port on 127.0.0.1 (default 7870)")
    u.set_defaults(func=cmd_ui)

    km = sub.add_parser("map", help="key map of a pruned SDXL (SSD-1B, Vega) to its base, by layer similarity")
    km.add_argument("pruned", metavar="PRUNED", help="the pruned model (e.g. SSD-1B)")
    km.add_argument("base", metavar="BASE", help="the full model it was made from (e.g. SDXL base 1.0)")
    km.add_argument("-o", "--output", required=True, help="where to write the map (.json)")
    km.add_argument("--hash-cache", metavar="FILE", help="hash cache file (default ~/.cache/blockmerge)")
    km.set_defaults(func=cmd_map)

    cp = sub.add_parser("compare", help="how alike models are, per block and element kind (cosine, L2), "
                                         "as a table, JSON and a heatmap",
                        description="Cosine similarity and relative L2 difference |A-x|/|A| of A vs B (and A vs C) "
                                    "for every merge block (rows) and element kind (attn1, attn2, ff, norm, proj, "
                                    "conv, emb; Flux: attn, mlp, linear, mod, ...), in one streaming pass.")
    cp.add_argument("models", nargs="+", metavar="MODEL", help="A B [C]: models of one architecture")
    cp.add_argument("--heatmap", metavar="OUT.png", help="also draw the heatmap into this PNG file")
    cp.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    cp.add_argument("--key-map", metavar="MAP.json", help="A is a pruned SDXL: read B and C through this map")
    cp.add_argument("--quiet", action="store_true", help="no progress bar")
    cp.set_defaults(func=cmd_compare)

    c = sub.add_parser("clean", help="remove .partial temp files left by killed merges (not running ones)")
    c.add_argument("folders", nargs="*", metavar="FOLDER", help="output folders (default: the current one)")
    c.add_argument("--dry-run", action="store_true", help="list what would be removed")
    c.set_defaults(func=cmd_clean)

    try:
        from .lora.cli import add_parser as add_lora
    except ImportError:
        add_lora = None
    if add_lora is not None:
        add_lora(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    import signal
    import threading
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except MergeError as e:
        if type(e).__name__ == "Cancelled":
            print(f"blockmerge: {e}", file=sys.stderr)
            return EXIT_CANCEL
        print(f"blockmerge: error: {e}", file=sys.stderr)
        return EXIT_USER
    except Terminated:
        print("blockmerge: terminated (SIGTERM); nothing was written", file=sys.stderr)
        return EXIT_TERM
    except KeyboardInterrupt:
        print("blockmerge: interrupted; nothing was written", file=sys.stderr)
        return EXIT_CANCEL
    except BrokenPipeError:  # `... | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
