"""`compare` on a real-size pair, next to a plain weight-sum merge of the same pair: wall time, CPU and
peak anonymous memory of each (child processes measured by bench_measure.run_measured).

    python bench/bench_compare.py --workdir DIR [--arch sdxl] [--merge-dtype keep|fp8_e4m3fn] [--keep]

The two inputs are random fp16 checkpoints with every real key and shape (bench_inputs.generate,
seeds 1 and 2), reused when already in DIR. The heatmap of the pair is written to DIR/compare.png.
`--merge-dtype fp8_e4m3fn` halves the merge's output when the disk is short (the merge still reads
and computes every key in float32; only the cast and the bytes written differ).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from bench_common import ARCHS, GiB
from bench_inputs import expected_size, generate
from bench_measure import run_measured


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--arch", choices=tuple(ARCHS), default="sdxl")
    ap.add_argument("--merge-dtype", default="keep")
    ap.add_argument("--keep", action="store_true", help="keep the inputs and the merge")
    ap.add_argument("--poll", type=float, default=0.05)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    inputs = []
    for seed in (1, 2):
        path = os.path.join(args.workdir, f"{args.arch}_{seed}.safetensors")
        if not (os.path.isfile(path) and os.path.getsize(path) == expected_size(args.arch, seed)):
            print(f"generating {path}", file=sys.stderr)
            generate(args.arch, seed, path)
        inputs.append(path)
    py = sys.executable
    cache = ["--hash-cache", os.path.join(args.workdir, "hashes.json")]
    png = os.path.join(args.workdir, "compare.png")
    merged = os.path.join(args.workdir, "merged.safetensors")
    rows = {}
    rows["compare"] = run_measured([py, "-m", "lib_merge", "compare", *inputs, "--heatmap", png, "--json",
                                    "--quiet"], args.poll)
    # hash once first, so the merge row is the merge itself (as the main benchmark's rows are)
    run_measured([py, "-m", "lib_merge", "merge", *inputs, "-o", merged, "--overwrite", "--quiet", *cache,
                  "--dtype", args.merge_dtype], args.poll)
    rows["weight_sum"] = run_measured([py, "-m", "lib_merge", "merge", *inputs, "-o", merged, "--overwrite",
                                       "--quiet", *cache, "--dtype", args.merge_dtype], args.poll)
    size = sum(os.path.getsize(p) for p in inputs)
    print(f"{args.arch}: inputs {size / GiB:.2f} GiB ({os.path.basename(inputs[0])}, {os.path.basename(inputs[1])})")
    print(f"{'step':<12} {'wall s':>8} {'cpu s':>8} {'anon MiB':>9} {'rss MiB':>8} {'load':>5} rc")
    for name, r in rows.items():
        print(f"{name:<12} {r['wall']:8.1f} {r['cpu']:8.1f} {r['anon'] / 2**20:9.0f} {r['rss'] / 2**20:8.0f} "
              f"{r['load']:5.1f} {r['rc']}")
        if r["rc"]:
            print(r["stderr"], file=sys.stderr)
    print(f"heatmap: {png}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: {kk: vv for kk, vv in v.items() if kk != "stderr"} for k, v in rows.items()}, f, indent=1)
    if not args.keep:
        for p in (*inputs, merged):
            if os.path.exists(p):
                os.remove(p)
    return 1 if any(r["rc"] for r in rows.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
