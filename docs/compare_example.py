"""Make docs/compare_heatmap.png, the README's Compare example, from tiny random files:

    python docs/compare_example.py [OUT.png]

A and C are tiny SDXL checkpoints with every real key (random weights, tests/synth.py). B is a real
block-weighted merge of them made by the merge command — B = (1 - w)·A + w·C with w rising from 0
(BASE, IN00) to 0.8 (OUT08) — so the heatmap of `compare A B` shows those weights back: how much of
each block of B is not A.
"""
from __future__ import annotations

import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# BASE, IN00..IN08, M00, OUT00..OUT08 (20 SDXL blocks)
WEIGHTS = "0,0,0,0.05,0.05,0.1,0.1,0.15,0.2,0.2,0.3,0.4,0.4,0.5,0.5,0.6,0.6,0.7,0.8,0.8"


def main(out: str) -> int:
    from lib_merge.cli import main as cli
    from tests.synth import write_checkpoint
    with tempfile.TemporaryDirectory() as d:
        a, c, b = (os.path.join(d, n) for n in ("A.safetensors", "C.safetensors", "B.safetensors"))
        write_checkpoint(a, "sdxl", seed=1)
        write_checkpoint(c, "sdxl", seed=2)
        rc = cli(["merge", a, c, "-o", b, "--alpha-blocks", WEIGHTS, "--quiet",
                  "--hash-cache", os.path.join(d, "hashes.json")])
        return rc or cli(["compare", a, b, "--heatmap", out, "--quiet"])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "compare_heatmap.png")))
