"""Where the pipeline's writer thread puts each job's bytes: a safetensors file or a dict."""
from __future__ import annotations

from typing import TYPE_CHECKING, MutableMapping

import torch

from ..io.safetensors_io import DTYPES, SafetensorsWriter

if TYPE_CHECKING:
    from .pipeline import Job


class FileSink:
    def __init__(self, writer: SafetensorsWriter):
        self.writer = writer

    def put(self, job: Job, data: torch.Tensor) -> None:  # data: the bytes of the output dtype
        if data.numel():
            self.writer.write(job.kp.key, data)

    def drop_behind(self) -> None:
        self.writer.drop_behind()


class DictSink:
    """Fills a dict. A tensor already under a key with the right shape and dtype (a previous merge
    into the same dict, as XY plots do) is overwritten in place: repeated merges reuse one model's
    memory instead of allocating a new one each time."""

    def __init__(self, sd: MutableMapping[str, torch.Tensor]):
        self.sd = sd

    def put(self, job: Job, data: torch.Tensor) -> None:
        kp = job.kp
        dtype = DTYPES[kp.out_dtype]
        if job.first == 0:
            old = self.sd.get(kp.key)
            reuse = (isinstance(old, torch.Tensor) and old.shape == kp.shape and old.dtype == dtype
                     and old.device.type == "cpu" and old.is_contiguous())
            # assigned even when reused, so a dict that tracks what a merge wrote sees every key
            self.sd[kp.key] = old if reuse else torch.empty(kp.shape, dtype=dtype)
        if data.numel():
            self.sd[kp.key].view(-1)[job.first:job.first + job.count].copy_(data.view(dtype))
