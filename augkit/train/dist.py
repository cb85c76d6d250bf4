"""Processes of a run: the rank, collective helpers, and the periodic flag exchange that stops
every rank together (time budget reached, or a non-finite loss on any rank)."""

from __future__ import annotations

import os

import torch

__all__ = ["Dist", "SYNC_EVERY"]

# steps between two flag exchanges under DDP (a 2-number all_reduce; none on a single process)
SYNC_EVERY = 8


class Dist:
    """The process group of a run (a single process when ``WORLD_SIZE`` is unset or 1)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.on = self.world > 1

    @property
    def main(self) -> bool:
        """True on rank 0, the process that writes files and talks."""
        return self.rank == 0

    def init(self, device_type: str) -> None:
        """Join the process group (NCCL on CUDA, gloo on CPU)."""
        if self.on and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if device_type == "cuda" else "gloo")

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.on:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def from_main(self, fn):
        """Run ``fn()`` on rank 0 only and hand its result (or its error) to every rank."""
        result, error = None, None
        if self.main:
            try:
                result = fn()
            except Exception as e:  # re-raised on every rank below, so none waits forever
                error = e
        if self.on:
            result, error = self.broadcast((result, error))
        if error is not None:
            raise error
        return result

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order."""
        if not self.on:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def any_flags(self, flags: list[bool], device) -> list[bool]:
        """Element-wise OR of boolean flags over all ranks (one small all_reduce)."""
        if not self.on:
            return [bool(f) for f in flags]
        t = torch.tensor([float(bool(f)) for f in flags], device=device)
        torch.distributed.all_reduce(t)
        return [bool(v > 0) for v in t.tolist()]

    def barrier(self) -> None:
        if self.on:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.on and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
