"""The first pass of the cosine calc modes: the similarity samples behind lo and hi (REFERENCE §2).

The population is the incumbent's (hako-mikan/sd-webui-supermerger scripts/mergers/mergers.py,
precosine, 0b1c491), so the same inputs give the same k for every key:
- every key of model A whose name contains "model" and that B has too, except the VAE
  (`first_stage_model`) — merged or not: excluded keys, keys of any block weight, `position_ids`
  and the OpenCLIP scalars count as well;
- each key's samples as the method's `stat` gives them (one per element of shape[1:]);
- NaN samples dropped; then the samples below the 1st percentile removed, then, of the rest, those
  above the 99th (both percentiles by the midpoint method, the second one taken after the first cut);
- lo and hi are the smallest and largest samples left.
A key whose shape differs between A and B is left out, except the first conv of inpainting /
pix2pix models, compared on their shared input channels as the merge does.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import Cancelled
from ..io.models import ModelSource
from .engine_types import CancelToken, Progress
from .plan import MergePlan
from .scaled import descale, read_scales


def population_keys(plan: MergePlan) -> list[tuple[str, int | None]]:
    """(key, shared input channels or None) of every key whose similarity counts."""
    channels = {kp.key: kp.channels for kp in plan.keys}
    a, b = plan.headers[0], plan.headers[1]
    # fp8 scaled inputs: their scale keys and markers are bookkeeping, not weights
    skip = set().union(*((lay.scale_keys | lay.extras) for lay in plan.scaled[:2] if lay))
    out = []
    for key, ia in a.items():
        if "first_stage_model" in key or "model" not in key or key not in b or key in skip:
            continue
        ch = channels.get(key)
        if ia.shape != b[key].shape and ch is None:
            continue
        out.append((key, ch))
    return out


def trimmed_range(samples: np.ndarray) -> tuple[float, float]:
    """lo, hi of the samples: NaN dropped, below the 1st then above the 99th percentile cut."""
    s = samples[~np.isnan(samples)]
    if s.size == 0:
        return 0.0, 0.0
    s = s[s >= np.percentile(s, 1, method="midpoint")]
    s = s[s <= np.percentile(s, 99, method="midpoint")]
    return float(s.min()), float(s.max())


def cosine_range(plan: MergePlan, sources: list[ModelSource], progress: Progress | None,
                 cancel: CancelToken | None) -> tuple[float, float]:
    keys = population_keys(plan)
    values = read_scales(plan.scaled[:2], sources[:2]) if any(plan.scaled[:2]) else [{}, {}]
    scale_of = [lay.scale_of if lay else {} for lay in (plan.scaled[:2] or [None, None])]
    samples = []
    for i, (key, ch) in enumerate(keys):
        if cancel is not None and cancel.cancelled:
            raise Cancelled()
        a = descale(sources[0].get(key), scale_of[0].get(key), values[0])
        b = descale(sources[1].get(key), scale_of[1].get(key), values[1])
        if ch is not None:
            a, b = a[:, :ch], b[:, :ch]
        samples.append(plan.method.stat(a, b).reshape(-1).numpy().astype(np.float64))
        if progress:
            progress(i + 1, len(keys), "similarity statistics")
    return trimmed_range(np.concatenate(samples) if samples else np.zeros(0))
