"""LoRA block weights by their images in a REAL A1111 1.10.1 or Forge (dfdcbab6) (not run in CI).

With this checkout installed as the webui's extension and the harness's random LoRA:
    python tests/real_webui/check_lbw_images.py http://127.0.0.1:7870 [save.json]
checks, pixel for pixel, that lbw=ALL (every block 1) renders the plain LoRA, lbw=NONE (every block 0)
renders no LoRA, and a partial weight (OUTD) renders neither. With `save.json` it writes the
images of a set of lbw= strings, and with `compare.json` made by the same script in the same webui
with the incumbent LoRA Block Weight extension installed instead (`--compare incumbent.json`), it
compares image by image: the incumbent's numbers are the contract.
"""
from __future__ import annotations

import base64
import io
import json
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import tests.real_webui.drive_a1111 as d  # noqa: E402
from tests.real_webui.drive_a1111 import check  # noqa: E402

LORA = "random-lora"
STRINGS = ("ALL", "NONE", "OUTD", "INS", "1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1", "0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
           "1,0.5,0.25,1,0,1,0.75,0,1,0.5,0,1,0.5,1,0,0.25,1", "0.5,2,-1,1,0,1,0.75,0,1,0.5,0,1,0.5,1,0,0.25,1")


def render(prompt: str) -> np.ndarray:
    out = d.txt2img(prompt, seed=7, sampler_name="Euler")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(out["images"][0]))).convert("RGB"), dtype=np.int16)


def main() -> int:
    d.URL = sys.argv[1]
    save = sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith("--") else None
    plain, none = render("a cat"), render(f"a cat <lora:{LORA}:1>")
    check(np.abs(plain - none).max() > 0, "the LoRA changes the image at all")
    imgs = {s: render(f"a cat <lora:{LORA}:1:1:lbw={s}>") for s in STRINGS}
    check(np.array_equal(imgs["ALL"], none), "lbw=ALL renders the plain LoRA, pixel for pixel")
    check(np.array_equal(imgs["NONE"], plain), "lbw=NONE renders no LoRA, pixel for pixel")
    check(not np.array_equal(imgs["OUTD"], none) and not np.array_equal(imgs["OUTD"], plain),
          "lbw=OUTD renders neither")
    if save:
        with open(save, "w") as f:
            json.dump({s: base64.b64encode(Image.fromarray(v.astype(np.uint8)).tobytes()).decode() for s, v in imgs.items()}
                      | {"_shape": list(imgs["ALL"].shape)}, f)
        print(f"wrote {save}")
    if "--compare" in sys.argv:
        other = json.load(open(sys.argv[sys.argv.index("--compare") + 1]))
        shape = tuple(other.pop("_shape"))
        for s, b in other.items():
            theirs = np.frombuffer(base64.b64decode(b), dtype=np.uint8).reshape(shape).astype(np.int16)
            diff = int(np.abs(theirs - imgs[s]).max())
            check(diff <= 1, f"lbw={s}: same image as the incumbent (max pixel difference {diff})")
    return 1 if d.failed else 0


if __name__ == "__main__":
    sys.exit(main())
