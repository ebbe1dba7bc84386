"""Training-step throughput: images/s of forward + backward + AdamW step for a registered model.

Synthetic tensors already on the device, so this measures the model and optimiser, not the input pipeline
(`chexvision bench loader` measures that). `benchmarks/train_step.py` and `chexvision bench train` call this.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from chexvision.config import COMPILE_MODES
from chexvision.device import resolve_device
from chexvision.errors import BadInputError, UnknownName
from chexvision.labels import NUM_LABELS
from chexvision.models.registry import create_model, tiny_kwargs

__all__ = ["TrainStepResult", "autocast_dtype", "bench_train_step"]


@dataclass(frozen=True)
class TrainStepResult:
    model: str
    size: int  # input side, pixels
    batch: int  # images per step
    amp: bool
    dtype: str  # compute dtype: float32, bfloat16 or float16
    channels_last: bool
    compiled: str  # "off" or the torch.compile mode ("default", "max-autotune", ...)
    device: str  # cuda or cpu
    device_name: str  # GPU model or CPU architecture
    tiny: bool  # the tiny test variant instead of the full-size model
    params: int
    steps: int  # timed steps (after warm-up)
    warmup: int
    warmup_seconds: float  # wall time of the warm-up steps (includes torch.compile's compilation)
    seconds: float  # wall time of the timed steps
    ms_per_step: float
    images_per_second: float
    peak_memory_mib: float | None  # CUDA only: max allocated during the run
    torch: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def autocast_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the hardware has it (Ampere+ GPUs, CPUs), else fp16 (T4, V100) which needs a GradScaler."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _check_args(size: int, batch: int, steps: int, warmup: int) -> None:
    if size < 32 or batch < 1 or steps < 1 or warmup < 0:
        raise BadInputError(
            f"bench train needs size >= 32, batch >= 1, steps >= 1, warmup >= 0 "
            f"(got size={size}, batch={batch}, steps={steps}, warmup={warmup})",
            "e.g. --size 320 --batch 64 --steps 20 --warmup 5",
        )


def bench_train_step(
    model_name: str,
    *,
    size: int = 320,
    batch: int = 32,
    amp: bool = False,
    channels_last: bool = False,
    steps: int = 20,
    warmup: int = 5,
    tiny: bool = False,
    device: torch.device | str | None = None,
    seed: int = 0,
    model_kwargs: dict[str, Any] | None = None,
    compile_mode: str | None = None,
) -> TrainStepResult:
    """Time `steps` training steps of `model_name` on one fixed random batch, after `warmup` untimed steps.

    `model_kwargs` (e.g. a preset's small variant) overrides `tiny`; `compile_mode` wraps the model in
    `torch.compile(mode=...)` ("default", "reduce-overhead", "max-autotune"; the warm-up steps absorb the compile).
    """
    _check_args(size, batch, steps, warmup)
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        raise UnknownName("--compile mode", compile_mode, COMPILE_MODES)
    dev = resolve_device(device or "auto")
    torch.manual_seed(seed)
    kwargs = dict(model_kwargs) if model_kwargs is not None else tiny_kwargs(model_name) if tiny else {}
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = create_model(model_name, **kwargs).to(dev).to(memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    net: Any = model if compile_mode is None else torch.compile(model, mode=compile_mode)
    dtype = autocast_dtype(dev) if amp else torch.float32
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)

    x = torch.randn(batch, 1, size, size, device=dev).contiguous(memory_format=memory_format)
    y14 = torch.randint(0, 2, (batch, NUM_LABELS), device=dev).float()
    ybin = y14.amax(dim=1)

    def step() -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=amp):
            multi, binary = net(x)
            loss = F.binary_cross_entropy_with_logits(multi.float(), y14)
            loss = loss + 0.5 * F.binary_cross_entropy_with_logits(binary.float(), ybin)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shape: let cuDNN pick the fastest kernels once
        torch.cuda.reset_peak_memory_stats(dev)
    warm_start = time.perf_counter()
    for _ in range(warmup):
        step()
    _synchronize(dev)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(dev)  # CUDA runs asynchronously: stop the clock only when the GPU has finished
    seconds = time.perf_counter() - start

    return TrainStepResult(
        model=model_name,
        size=size,
        batch=batch,
        amp=amp,
        dtype=str(dtype).removeprefix("torch."),
        channels_last=channels_last,
        compiled="off" if compile_mode is None else compile_mode,
        device=dev.type,
        device_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.machine(),
        tiny=tiny,
        params=sum(p.numel() for p in model.parameters()),
        steps=steps,
        warmup=warmup,
        warmup_seconds=round(start - warm_start, 3),
        seconds=round(seconds, 4),
        ms_per_step=round(1000 * seconds / steps, 3),
        images_per_second=round(batch * steps / seconds, 2),
        peak_memory_mib=round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if dev.type == "cuda" else None,
        torch=torch.__version__,
    )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
