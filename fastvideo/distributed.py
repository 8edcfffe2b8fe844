"""The one place that reads the torchrun environment and sets up devices, process groups and FSDP2.

``torchrun`` exports RANK, WORLD_SIZE, LOCAL_RANK (and MASTER_ADDR/PORT); a plain ``python`` run is
rank 0 of 1. The backend follows the device: nccl on CUDA, gloo on CPU. Never hard-coded.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

MIXED_PRECISIONS = ("auto", "fp32", "bf16")
"""``train.mixed_precision`` values ``autocast`` and ``shard_model`` implement."""


@dataclass(frozen=True)
class DistEnv:
    """Rank layout and the device this process computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def read_torchrun_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the environment torchrun sets; (0, 1, 0) otherwise."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def pick_device(local_rank: int = 0) -> torch.device:
    """cuda:<local_rank> when a GPU is present, else cpu (FORCE_CPU=1 forces cpu)."""
    if torch.cuda.is_available() and os.environ.get("FORCE_CPU", "0") != "1":
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed(timeout_minutes: int = 30) -> DistEnv:
    """Initialise the default process group when launched with several ranks (idempotent)."""
    rank, world, local = read_torchrun_env()
    device = pick_device(local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return DistEnv(rank, world, local, device)


def destroy_distributed(wait: bool = True) -> None:
    """Tear the process group down (after a barrier unless ``wait`` is false, e.g. after an error)."""
    if dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate equally shaped tensors from all ranks along dim 0 (rank order)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return tensor
    comm = tensor.to(_comm_device())
    out = [torch.empty_like(comm) for _ in range(dist.get_world_size())]
    dist.all_gather(out, comm.contiguous())
    return torch.cat(out).to(tensor.device)


def all_reduce_mean(value: float) -> float:
    """Mean of a python float over ranks."""
    if not dist.is_initialized():
        return float(value)
    t = torch.tensor([float(value)], device=_comm_device())
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def autocast(device: torch.device, mixed_precision: str):
    """Autocast context: bf16 on CUDA for 'auto'/'bf16'; none ('fp32', or CPU with 'auto')."""
    use_bf16 = mixed_precision == "bf16" or (mixed_precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def shard_model(module: nn.Module, blocks: list[nn.Module], env: DistEnv, mixed_precision: str,
                mesh=None) -> nn.Module:
    """FSDP2: ``fully_shard`` each transformer block, then the root (torchtitan's recipe).

    ``mesh``: the device mesh to shard over (None: all ranks of the default process group).
    On CUDA with bf16 the parameters are all-gathered in bf16 and gradients reduced in fp32;
    on CPU everything stays fp32. Gradients are averaged over ranks by the reduce-scatter.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    use_bf16 = env.device.type == "cuda" and mixed_precision in ("auto", "bf16")
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if use_bf16 \
        else MixedPrecisionPolicy()
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=mp)
    fully_shard(module, mesh=mesh, mp_policy=mp)
    return module


def enable_gradient_checkpointing(module: nn.Module) -> None:
    """Activation checkpointing through the model's own switch (diffusers/transformers models)."""
    if hasattr(module, "enable_gradient_checkpointing"):
        module.enable_gradient_checkpointing()
    else:
        raise ValueError(f"{type(module).__name__} has no gradient-checkpointing switch")
