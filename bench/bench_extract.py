"""`lora extract` on real-size SD1.5: wall time and peak memory at a given rank (issue 10: < 1 min at rank 8).

    python bench/bench_extract.py --workdir /work/data/issue10 [--rank 8] [--exact]

Inputs: a random real-size fp16 SD1.5 base (bench_inputs) and a "fine-tune" of it: base + a rank-16
change + a little noise on every LoRA-able layer (what a real fine-tune's difference looks like: a few
strong directions over a noise floor). Both are written once and reused. Prints seconds, peak RSS and,
for a few of the largest layers, how far the extracted product is from the exact best rank-r
approximation (relative Frobenius error of each, and their ratio: 1.00 = as good as the exact SVD).
`--exact` runs the full SVD everywhere (the old behaviour) for comparison.
"""
from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time

from bench_common import sys_path
from bench_inputs import entries_of, expected_size, generate


def make_tuned(base: str, path: str) -> None:
    sys_path()
    import torch
    from lib_merge.io.safetensors_io import SafetensorsReader, SafetensorsWriter
    if os.path.exists(path) and os.path.getsize(path) == os.path.getsize(base):
        return
    g = torch.Generator().manual_seed(7)
    ents = entries_of("sd15")
    with SafetensorsReader(base) as r, open(path + ".tmp", "wb") as f:
        w = SafetensorsWriter(f, ents, {"format": "pt", "blockmerge_bench": "tuned"})
        for key, dtype, shape in ents:
            t = r.get(key)
            if dtype == "F16" and len(shape) in (2, 4) and key.startswith(("model.diffusion_model", "cond_stage")):
                m = shape[0]
                n = math.prod(shape[1:])
                u = torch.randn(m, 16, generator=g) * 0.02
                v = torch.randn(16, n, generator=g) * 0.02
                noise = torch.randn(m, n, generator=g) * 0.002
                t = (t.float().reshape(m, n) + u @ v + noise).to(torch.float16).reshape(shape)
            w.write(key, t.reshape(-1) if t.numel() else t)
        w.finish()
    os.replace(path + ".tmp", path)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--exact", action="store_true", help="full SVD on every layer (the old way)")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    base = os.path.join(a.workdir, "sd15_base.safetensors")
    if not (os.path.exists(base) and os.path.getsize(base) == expected_size("sd15", 1)):
        generate("sd15", 1, base)
    tuned = os.path.join(a.workdir, "sd15_tuned.safetensors")
    make_tuned(base, tuned)
    sys_path()
    import torch
    torch.set_num_threads(1)
    from lib_merge.io.hashing import NoCache
    from lib_merge.lora import merge as lora_merge
    from lib_merge.lora.extract import extract
    if a.exact:
        lora_merge.FAST_MIN = 1 << 30  # never the randomized path
    out = os.path.join(a.workdir, "extract.safetensors")
    if os.path.exists(out):
        os.unlink(out)
    t0 = time.perf_counter()
    res = extract(tuned, base, out, rank=a.rank, hash_cache=NoCache())
    secs = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"extract rank {a.rank}{' (exact SVD)' if a.exact else ''}: {res.modules} modules in {secs:.1f} s, "
          f"peak RSS {rss:.0f} MB, output {os.path.getsize(out) / 1e6:.1f} MB")
    # quality on the biggest layers: ours vs the exact truncated SVD
    from lib_merge.io.safetensors_io import SafetensorsReader
    keys = ["model.diffusion_model.middle_block.1.transformer_blocks.0.ff.net.0.proj.weight",
            "model.diffusion_model.output_blocks.3.1.transformer_blocks.0.attn1.to_q.weight"]
    with SafetensorsReader(tuned) as rt, SafetensorsReader(base) as rb:
        for k in keys:
            d = rt.get(k).float() - rb.get(k).float()
            up, down = lora_merge.svd_factors(d, a.rank)
            u, s, vh = torch.linalg.svd(d, full_matrices=False)
            best = (u[:, :a.rank] * s[:a.rank]) @ vh[:a.rank]
            e_ours = float((d - up @ down).norm() / d.norm())
            e_best = float((d - best).norm() / d.norm())
            print(f"  {k.split('model.')[-1]}: rel. error {e_ours:.4f} vs exact {e_best:.4f} "
                  f"(ratio {e_ours / e_best:.3f})")
    os.unlink(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
