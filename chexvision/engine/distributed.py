"""torch.distributed for `torchrun --nproc_per_node N`: set-up, tear-down, and gathering validation outputs.

Launched by torchrun, every process sees RANK / WORLD_SIZE / LOCAL_RANK. CUDA uses NCCL with one GPU per
process; CPU uses Gloo (tests run two CPU processes). Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from chexvision.device import resolve_device

__all__ = [
    "DistInfo",
    "all_gather_rows",
    "barrier",
    "broadcast_buffers",
    "cleanup_distributed",
    "init_distributed",
    "sum_all",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a single process."""
    device = resolve_device(device_name)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last training step every rank holds its
    own statistics; validation must use rank 0's, the ones that get saved.
    """
    if info.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def sum_all(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sum over ranks (float64 on the backend's device)."""
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.tolist()]


def all_gather_rows(rows: torch.Tensor, info: DistInfo) -> list[torch.Tensor]:
    """Every rank's [n_r, ...] tensor (row counts may differ), on CPU, in rank order."""
    if not info.enabled:
        return [rows.cpu()]
    rows = rows.to(info.device)
    count = torch.tensor([rows.shape[0]], device=info.device)
    counts = [torch.zeros_like(count) for _ in range(info.world_size)]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest, *rows.shape[1:]), dtype=rows.dtype, device=info.device)
    padded[: rows.shape[0]] = rows
    gathered = [torch.zeros_like(padded) for _ in range(info.world_size)]
    dist.all_gather(gathered, padded)
    return [g[: int(c.item())].cpu() for g, c in zip(gathered, counts, strict=True)]
