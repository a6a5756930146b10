"""`python -m lib_merge lora bake|merge|extract|inspect`: thin over the library.

Handlers return an exit code and raise MergeError for user mistakes; the main CLI prints those on
one line and exits 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..cli_support import tqdm_progress
from ..errors import ParseError

_DTYPES = ("keep", "fp16", "bf16", "fp32")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("lora", help="LoRA tools: bake into a checkpoint, merge, extract, inspect")
    sub = p.add_subparsers(dest="lora_command", required=True, metavar="{bake,merge,extract,inspect}")

    b = sub.add_parser("bake", help="add LoRAs (with block weights) into a checkpoint")
    b.add_argument("model", metavar="MODEL", help="checkpoint (.safetensors or .ckpt)")
    b.add_argument("-l", "--lora", action="append", required=True, metavar="PATH:TE:UNET[:lbw=..][:lbwe=..]",
                   help="a LoRA and its multipliers, like the prompt tag without <lora: >; repeat for more")
    b.add_argument("-o", "--output", required=True, help="output .safetensors file")
    b.add_argument("--dtype", choices=_DTYPES, default="keep", help="output precision (default: the model's)")
    b.add_argument("--allow-extreme", action="store_true", help="accept multipliers outside [-10, 10]")
    _common(b)
    b.set_defaults(func=cmd_bake)

    m = sub.add_parser("merge", help="merge LoRAs into one LoRA")
    m.add_argument("-l", "--lora", action="append", required=True, metavar="PATH:RATIO[:lbw=..]",
                   help="a LoRA and its ratio (PATH:TE:UNET also works); repeat for more")
    m.add_argument("-o", "--output", required=True)
    m.add_argument("--rank", type=int, help="re-factorise by SVD to this rank (default: lossless)")
    m.add_argument("--conv-rank", type=int, help="rank of 3x3 conv layers with --rank (default: --rank)")
    m.add_argument("--dtype", choices=_DTYPES, default="keep", help="default: the first LoRA's")
    _common(m)
    m.set_defaults(func=cmd_merge)

    e = sub.add_parser("extract", help="extract a LoRA from a fine-tuned checkpoint and its base")
    e.add_argument("tuned", metavar="TUNED")
    e.add_argument("base", metavar="BASE")
    e.add_argument("--rank", type=int, required=True)
    e.add_argument("--conv-rank", type=int, help="also extract resnet/sampler convs at this rank (LoCon)")
    e.add_argument("--min-diff", type=float, default=0.0, help="leave out layers whose change is at most this")
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--dtype", choices=_DTYPES, default="keep")
    e.add_argument("--overwrite", action="store_true")
    e.add_argument("--hash-cache", metavar="FILE")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_extract)

    i = sub.add_parser("inspect", help="format, architecture, rank/alpha, modules per block")
    i.add_argument("lora", metavar="LORA")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_inspect)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, help="seed for R/U entries (recorded in the output's metadata)")
    p.add_argument("--presets", metavar="FILE", help="your LoRA block-weight presets (NAME:values lines)")
    p.add_argument("--lbwe-presets", metavar="FILE", help="your elemental presets (NAME:BLOCKS:ELEMENTS:RATIO)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--hash-cache", metavar="FILE", help="hash cache file (default ~/.cache/blockmerge)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _book(args):
    from .presets import PresetBook
    return PresetBook.from_files(args.presets, args.lbwe_presets)


def _cache(args):
    from ..io.hashing import HashCache
    return HashCache(args.hash_cache) if args.hash_cache else HashCache()


def _specs(args, book):
    from .tag import parse_spec
    return [parse_spec(s, book) for s in args.lora]


def cmd_bake(args: argparse.Namespace) -> int:
    from .bake import bake
    book = _book(args)
    with tqdm_progress(args.quiet) as progress:
        r = bake(args.model, _specs(args, book), args.output, dtype=args.dtype, presets=book, seed=args.seed,
                 overwrite=args.overwrite, hash_cache=_cache(args), progress=progress,
                 allow_extreme=args.allow_extreme)
    if not args.quiet:
        for rep in r.loras:
            extra = f", {len(rep.not_in_model)} not in the model" if rep.not_in_model else ""
            off = f", {rep.off} at strength 0" if rep.off else ""
            seed = f" (seed {rep.ratios.seed})" if rep.ratios.seed is not None else ""
            print(f"{rep.name}: {rep.applied} modules baked{off}{extra}{seed}")
    # the one-line result, even with --quiet (which hides the bars and the details)
    print(f"{r.arch.label}: {r.changed_keys} keys changed in {r.seconds:.1f} s -> {r.output}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from .merge import merge_loras
    book = _book(args)
    if args.conv_rank is not None and args.rank is None:
        raise ParseError("--conv-rank needs --rank", "add --rank R, or drop --conv-rank for a lossless merge")
    with tqdm_progress(args.quiet) as progress:
        r = merge_loras(_specs(args, book), args.output, rank=args.rank, conv_rank=args.conv_rank, dtype=args.dtype,
                        presets=book, seed=args.seed, overwrite=args.overwrite, hash_cache=_cache(args),
                        progress=progress)
    print(f"{r.arch.label}: {r.concatenated} modules concatenated, {r.full} as full differences, "
              f"{r.factorised} re-factorised in {r.seconds:.1f} s -> {r.output}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from .extract import extract
    with tqdm_progress(args.quiet) as progress:
        r = extract(args.tuned, args.base, args.output, rank=args.rank, conv_rank=args.conv_rank, dtype=args.dtype,
                    min_diff=args.min_diff, overwrite=args.overwrite, hash_cache=_cache(args), progress=progress)
    print(f"{r.arch.label}: {r.modules} modules extracted ({r.unchanged} unchanged layers left out) "
              f"in {r.seconds:.1f} s -> {r.output}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect import format_report, inspect_lora
    r = inspect_lora(args.lora)
    if args.json:
        json.dump(r.as_dict(), sys.stdout, indent=1)
        print()
    else:
        print(format_report(r))
    return 0
