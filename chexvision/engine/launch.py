"""Starting a training run from what was asked: the config of a new or continued run, then `fit` in this process.

A new run's config is preset -> `--config` file -> `--set` overrides -> command-line flags. A continued run
(`--resume`) trains what it started with: its config.json, then `--set` overrides and flags on top (e.g.
`--set schedule.epochs=80` to extend a finished run); a change outside `chexvision.rundir.RESUME_CHANGEABLE` is
refused, naming the keys. Default preset: `kaggle-t4` when training runs on CUDA,
else `smoke`. Nothing here imports torch at import time, so `chexvision train --help` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chexvision.errors import BadInputError
from chexvision.rundir import CONFIG_JSON, check_resume_config

if TYPE_CHECKING:
    from chexvision.config import TrainConfig
    from chexvision.engine.state import FitResult, Reporter

__all__ = ["default_preset", "flag_overrides", "resolve_train_config", "run_training"]


def default_preset(device: str) -> str:
    """`kaggle-t4` when `device` (cpu | cuda | auto) resolves to CUDA, else `smoke`."""
    from chexvision.device import resolve_device

    return "kaggle-t4" if resolve_device(device).type == "cuda" else "smoke"


def flag_overrides(
    model: str, split_scheme: str | None, no_pretrained: bool, weights: Path | None, device: str | None, strict: bool
) -> list[str]:
    """The `key=value` overrides that the train command's own flags stand for (applied after `--set`).

    `device` None (no `--device`): the config's `device` key decides (`--set device=cuda`, a --config file, the
    preset, else `auto`); a flag given overrides it.
    """
    flags = [f"model.name={json.dumps(model)}"]
    if device is not None:
        flags.append(f"device={json.dumps(device)}")
    if strict:
        flags.append("data.strict=true")
    if split_scheme is not None:
        flags.append(f"data.split_scheme={json.dumps(split_scheme)}")
    if no_pretrained:
        flags.append("model.pretrained=false")
    if weights is not None:
        if not weights.is_file():
            raise BadInputError(f"weights file {weights} not found", "pass an existing .pth/.safetensors file")
        flags.append(f"model.weights={json.dumps(str(weights))}")
    return flags


def resolve_train_config(
    *, out: Path, resume: bool, preset: str | None, config: Path | None, overrides: Sequence[str],
    flags: Sequence[str], model: str, device: str | None = None,
) -> TrainConfig:  # fmt: skip
    """A new run: preset, file, overrides, flags. A resumed run: its config.json, then overrides and flags.

    The resolved `device` key is checked here, before any data is read or file written: an unknown name or CUDA
    where there is none is a one-line error (exit 2). `device` is the `--device` flag (None: not given).
    """
    cfg = _resolve(out=out, resume=resume, preset=preset, config=config, overrides=overrides, flags=flags,
                   model=model, device=device)  # fmt: skip
    from chexvision.device import resolve_device

    resolve_device(cfg.device)
    return cfg


def _resolve(
    *, out: Path, resume: bool, preset: str | None, config: Path | None, overrides: Sequence[str],
    flags: Sequence[str], model: str, device: str | None,
) -> TrainConfig:  # fmt: skip
    from chexvision.config import TrainConfig, apply_overrides, load_config
    from chexvision.files import read_json_object

    saved = out / CONFIG_JSON
    if resume and saved.is_file():
        hint = f"fix or delete {saved}, or start a new run with another --out"
        cfg = TrainConfig.from_dict(_with_legacy_defaults(read_json_object(saved, hint)))
        if cfg.model.name != model:
            raise BadInputError(
                f"{out} is a {cfg.model.name} run, not {model}", f"resume it with --model {cfg.model.name}"
            )
        resumed = apply_overrides(cfg, [*overrides, *flags])
        check_resume_config(out, cfg.to_dict(), resumed.to_dict())  # before any data is read or file written
        return resumed
    if resume:  # before: silently a new run from scratch, exit 0
        raise BadInputError(f"nothing to resume in {out}: it holds no {CONFIG_JSON}", "drop --resume for a new run")
    if preset is None:  # the default preset follows the device training will run on, wherever that was said
        preset = default_preset(device or load_config(None, config, [*overrides, *flags]).device)
    return load_config(preset, config, [*overrides, *flags])


# Keys added after runs were already written, with the value those older runs trained with (a newer default
# must not change a resumed run's training). Dotted paths into config.json.
LEGACY_DEFAULTS = {"data.aug.interpolation": "bilinear"}


def _with_legacy_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """`saved` (a run's config.json) with LEGACY_DEFAULTS filled in where it has no such key."""
    for dotted, value in LEGACY_DEFAULTS.items():
        *parents, leaf = dotted.split(".")
        node: Any = saved
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf not in node:
            node[leaf] = value
    return saved


def run_training(
    cfg: TrainConfig, data: Path, out: Path, *, resume: bool, time_budget: float | None, run_id: str | None,
    make_reporter: Callable[[int], Reporter], started: float,
) -> FitResult | None:  # fmt: skip
    """`fit` in this process (one of `torchrun`'s, or the only one); the result on rank 0, None on the others.

    `make_reporter(rank)` draws the progress; its `close()` runs however training ends.
    """
    from chexvision.engine.distributed import cleanup_distributed, init_distributed
    from chexvision.engine.train import fit

    if not data.is_dir():
        raise BadInputError(f"data directory {data} not found", "make one: chexvision data synth --out DIR")
    dist = init_distributed(cfg.device)
    reporter = make_reporter(dist.rank)
    try:
        result = fit(
            cfg, data, out, resume=resume, time_budget_hours=time_budget, run_id=run_id,
            reporter=reporter, dist=dist, started=started,
        )  # fmt: skip
    finally:
        reporter.close()
        cleanup_distributed()
    return result if dist.is_main else None
