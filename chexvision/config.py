"""Typed training configuration: presets, a config file, then `key=value` overrides (nanoGPT-style).

Resolution order (later wins):

1. the preset (`chexvision/presets/<name>.toml`), its base keys then its `[models.<model>...]` section;
2. the `--config` file (TOML or JSON), the same way;
3. `--set key=value` overrides with dotted keys (`optim.lr=3e-4`), values parsed as TOML literals or JSON
   (a bare word is accepted for string fields: `data.split_scheme=patient`).

A `[models.<name>]` section is a partial config applied only when that model is trained, e.g.
`[models.seresnet.schedule] epochs = 100`. An unknown key anywhere is an error that names it and lists close
matches (`ConfigKeyError`). The augmentation config (`AugConfig`) lives here too: config sits at the bottom layer and
imports neither torch, OpenCV nor `chexvision.data` (the CLI resolves a config before deciding to load anything).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from chexvision._schema import coerce, merge, parse_value
from chexvision.errors import BadInputError, ConfigKeyError, UnknownName

__all__ = [
    "CLAHE_CLIP",
    "CLAHE_GRID",
    "CLAHE_MODES",
    "COMPILE_MODES",
    "INTERPOLATIONS",
    "PIPELINES",
    "PRESETS",
    "SPLIT_SCHEMES",
    "AmpMode",
    "AugConfig",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrackingConfig",
    "TrainConfig",
    "apply_overrides",
    "config_keys",
    "load_config",
    "preset_path",
]

PRESETS: tuple[str, ...] = ("smoke", "kaggle-t4", "full")
AmpMode = Literal["off", "fp16", "bf16", "auto"]


def _check(key: str, ok: bool, expected: str) -> None:
    """A section's range check; `_build` turns the ValueError into a BadInputError naming the section."""
    if not ok:
        raise ValueError(f"{key} must be {expected}")


@dataclass
class ModelConfig:
    name: str = "densenet"  # registry name: densenet | seresnet (`chexvision models list`)
    kwargs: dict[str, Any] = field(default_factory=dict)  # architecture kwargs for create_model (tiny variants)
    pretrained: bool = False  # start from ImageNet weights (densenet only); presets enable it on GPUs
    weights: str | None = None  # local pretrained-weights file; None = download when pretrained is true


CLAHE_MODES = ("auto", "always", "never")
CLAHE_CLIP = 2.0  # CLAHE clip limit (OpenCV units: multiples of the mean histogram bin)
CLAHE_GRID = 8  # CLAHE tiles per image side
PIPELINES = ("auto", "cpu", "gpu")
INTERPOLATIONS = ("nearest", "bilinear")  # resampling of the augmentation's one geometric warp
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile(mode=)
# Patient-disjoint split schemes (DESIGN §2); chexvision.data.splits implements them.
SPLIT_SCHEMES = ("official", "chexnet", "patient")


@dataclass
class AugConfig:
    """Training augmentation settings (embedded in the engine config; names stable, values JSON-able)."""

    enabled: bool = True  # False: training images get the eval transform (resize + normalise) only
    pipeline: str = "auto"  # where augmentation runs: "auto" (gpu on a CUDA device) | "cpu" | "gpu"
    clahe: str = "auto"  # "auto" (unless dataset.json says applied, or synthetic) | "always" | "never"
    clahe_clip: float = CLAHE_CLIP  # CLAHE clip limit (OpenCV units: multiples of the mean histogram bin)
    clahe_grid: int = CLAHE_GRID  # CLAHE tiles per image side
    flip_p: float = 0.5  # probability of a horizontal flip
    rotate_deg: float = 15.0  # rotation angle uniform in [-rotate_deg, +rotate_deg], degrees
    translate: float = 0.05  # shift uniform in [-translate, +translate] x image side, per axis (fraction)
    scale: tuple[float, float] = (0.9, 1.1)  # zoom factor uniform in this range (1.0 = unchanged)
    shear_deg: float = 5.0  # x-shear angle uniform in [-shear_deg, +shear_deg], degrees
    # Resampling of the one warp that does all the geometry: "nearest" (the original pipeline's and
    # torchxrayvision's: torchvision's RandomRotation/RandomAffine default; 2.5x cheaper than bilinear on the CPU
    # path, BENCHMARKS.md) | "bilinear" (smoother edges, every pixel a blend). Runs whose config.json predates
    # this key trained with "bilinear" and resume with it.
    interpolation: str = "nearest"
    brightness: float = 0.2  # intensity factor uniform in [1 - brightness, 1 + brightness]
    contrast: float = 0.2  # factor uniform in [1 - contrast, 1 + contrast] (blend with the image mean)
    blur_p: float = 0.2  # probability of a Gaussian blur
    blur_sigma: tuple[float, float] = (0.1, 1.0)  # blur sigma uniform in this range, pixels (training size)
    erase_p: float = 0.25  # probability of erasing one rectangle (set to 0 after normalisation = the mean)
    erase_scale: tuple[float, float] = (0.02, 0.1)  # erased area, fraction of the image area
    erase_ratio: tuple[float, float] = (0.3, 3.3)  # erased aspect ratio (height / width), log-uniform

    def __post_init__(self) -> None:
        # JSON and TOML give lists; keep tuples so configs compare equal after a round trip.
        for name in ("scale", "blur_sigma", "erase_scale", "erase_ratio"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or value[0] > value[1]:
                raise ValueError(f"aug.{name} must be a (low, high) pair with low <= high, got {value}")
            setattr(self, name, value)
        if self.pipeline not in PIPELINES:
            raise ValueError(f"aug.pipeline must be one of {PIPELINES}, got {self.pipeline!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"aug.interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if self.clahe not in CLAHE_MODES:
            raise ValueError(f"aug.clahe must be one of {CLAHE_MODES}, got {self.clahe!r}")
        for name in ("flip_p", "blur_p", "erase_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"aug.{name} must be a probability in [0, 1]")
        if not (0.0 <= self.brightness < 1.0 and 0.0 <= self.contrast < 1.0):
            raise ValueError("aug.brightness and aug.contrast must be in [0, 1)")
        if self.scale[0] <= 0 or self.blur_sigma[0] <= 0 or self.erase_ratio[0] <= 0:
            raise ValueError("aug.scale, aug.blur_sigma and aug.erase_ratio must be positive")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugConfig:
        """Build from a dict; an unknown key is an error (a typo must not silently do nothing)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown aug key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**dict(data))

    @classmethod
    def identity(cls) -> AugConfig:
        """A config whose every draw is the identity (tests; a base for switching single ops on)."""
        return cls(
            flip_p=0.0, rotate_deg=0.0, translate=0.0, scale=(1.0, 1.0), shear_deg=0.0, brightness=0.0,
            contrast=0.0, blur_p=0.0, erase_p=0.0,
        )  # fmt: skip


@dataclass
class DataConfig:
    size: int = 320  # input side in pixels (images are square, one channel)
    batch_size: int = 24  # images per micro-batch, per process
    workers: int = 4  # DataLoader worker processes per training process (Kaggle has 4 CPU cores)
    split_scheme: str | None = None  # official | chexnet | patient; None = dataset.json default, else official
    seed: int = 0  # split seed (which patients go to validation / the patient scheme)
    strict: bool = False  # a corrupt image: false = report file and row, skip, count; true = stop the run
    mean: float = 0.449  # normalisation mean on [0, 1] pixels (ImageNet RGB means averaged)
    std: float = 0.226  # normalisation std on [0, 1] pixels (ImageNet RGB stds averaged)
    # Training augmentation, incl. CLAHE (`aug.clahe`: auto | always | never, applied to train and eval alike).
    aug: AugConfig = field(default_factory=AugConfig)

    def __post_init__(self) -> None:
        # A bad value must fail here with its key, not as a tensor-shape error deep inside the first epoch.
        _check("data.size", self.size >= 32, "at least 32 (pixels; the networks downsample 32x)")
        _check("data.batch_size", self.batch_size >= 1, "at least 1")
        _check("data.workers", self.workers >= 0, "0 or more")
        _check("data.std", self.std > 0, "positive")


@dataclass
class OptimConfig:
    lr: float = 1e-3  # peak end-to-end learning rate (AdamW); densenet phase 2 uses 1e-4 via its preset section
    weight_decay: float = 0.01  # decoupled AdamW weight decay; never applied to norms and biases
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW (beta1, beta2)
    eps: float = 1e-8  # AdamW epsilon
    warmup_steps: int = 0  # linear warm-up in optimizer steps at the start of each phase; 0 = use warmup_epochs
    warmup_epochs: float = 1.0  # warm-up length in epochs when warmup_steps is 0
    min_lr_ratio: float = 0.01  # cosine floor as a fraction of the peak lr (0 = decay to zero)
    accumulation: int = 4  # micro-batches per optimizer step (effective batch = batch x accumulation x GPUs)
    clip_grad: float = 1.0  # max global gradient norm; 0 = no clipping
    amp: AmpMode = "auto"  # off | fp16 (GradScaler) | bf16 | auto (bf16 if supported, else fp16; CPU: off)

    def __post_init__(self) -> None:
        _check("optim.lr", self.lr > 0, "positive")
        _check("optim.weight_decay", self.weight_decay >= 0, "0 or more")
        _check("optim.betas", all(0 <= b < 1 for b in self.betas), "two numbers in [0, 1)")
        _check("optim.eps", self.eps > 0, "positive")
        _check("optim.warmup_steps", self.warmup_steps >= 0, "0 or more")
        _check("optim.warmup_epochs", self.warmup_epochs >= 0, "0 or more")
        _check("optim.min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]")
        _check("optim.accumulation", self.accumulation >= 1, "at least 1")
        _check("optim.clip_grad", self.clip_grad >= 0, "0 (off) or more")


@dataclass
class ScheduleConfig:
    epochs: int = 60  # maximum epochs (per-model sections: 60 densenet, 100 seresnet)
    patience: int = 15  # epochs without a val macro AUC improvement before stopping; 0 = never stop early
    min_delta: float = 0.0  # improvement in val macro AUC that counts as better
    frozen_epochs: int = 0  # phase 1 length in epochs: backbone and its BatchNorm statistics frozen; 0 = none
    frozen_lr: float = 1e-3  # phase-1 peak learning rate (heads only); phase 2 uses optim.lr

    def __post_init__(self) -> None:
        _check("schedule.epochs", self.epochs >= 1, "at least 1")
        _check("schedule.patience", self.patience >= 0, "0 (never stop early) or more")
        _check("schedule.min_delta", self.min_delta >= 0, "0 or more")
        _check("schedule.frozen_epochs", self.frozen_epochs >= 0, "0 or more")
        _check("schedule.frozen_lr", self.frozen_lr > 0, "positive")


@dataclass
class LossConfig:
    multi_weight: float = 1.0  # weight of the 14-label BCE term
    binary_weight: float = 0.5  # weight of the binary (any finding) BCE term
    pos_weight_cap: float = 50.0  # cap on the per-class pos_weight neg/pos (NIH Hernia alone is ~500)

    def __post_init__(self) -> None:
        _check("loss.multi_weight", self.multi_weight >= 0, "0 or more")
        _check("loss.binary_weight", self.binary_weight >= 0, "0 or more")
        _check("loss.pos_weight_cap", self.pos_weight_cap > 0, "positive")


@dataclass
class TrackingConfig:
    """Where training reports its metrics besides history.json (chexvision.engine.telemetry); rank 0 only."""

    tensorboard: bool = True  # TensorBoard event files in <run dir>/tensorboard/ (`tensorboard --logdir`)
    # MLflow tracking URI: file:///abs/mlruns | sqlite:///mlflow.db | http://host:5000; None = no MLflow.
    # Needs the `mlflow` extra. Credentials go in MLFLOW_TRACKING_TOKEN/_USERNAME/_PASSWORD, never in the URI.
    mlflow_uri: str | None = None
    mlflow_experiment: str = "chexvision"  # MLflow experiment name (created when missing)

    def __post_init__(self) -> None:
        _check("tracking.mlflow_experiment", bool(self.mlflow_experiment.strip()), "a non-empty name")
        if self.mlflow_uri is not None:
            _check("tracking.mlflow_uri", bool(self.mlflow_uri.strip()), "a tracking URI (or none: no MLflow)")
            # config.json and MLflow's own params keep the URI: a token in it would be written to disk.
            _check("tracking.mlflow_uri", urlsplit(self.mlflow_uri).username is None,
                   "free of credentials; put them in MLFLOW_TRACKING_TOKEN (or _USERNAME/_PASSWORD)")  # fmt: skip


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = 0  # training seed (initialisation, shuffling, augmentation, dropout)
    deterministic: bool = False  # torch.use_deterministic_algorithms(True): exact resume, slower on GPU
    device: str = "auto"  # cpu | cuda | auto (cuda when available)
    cpu_threads: int = 0  # torch intra-op threads when training on CPU; 0 = torch's default (all cores)
    # NHWC (channels_last) weights and batches: "auto" (on: CUDA, and CPU where BENCHMARKS.md measured it faster,
    # which is every model and size measured) | true | false
    channels_last: bool | str = "auto"
    # torch.compile of the model: "auto" (CUDA: mode "default"; CPU: off) | false | true (= "default") | a mode:
    # default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs. The first steps pay the compile.
    compile: bool | str = "auto"
    preset: str | None = None  # the preset this config started from (recorded, not read)

    def __post_init__(self) -> None:
        _check("channels_last", self.channels_last in (True, False, "auto"), 'true, false or "auto"')
        _check("compile", self.compile in (True, False, "auto", *COMPILE_MODES),
               f'true, false, "auto" or a torch.compile mode ({", ".join(COMPILE_MODES)})')  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists); what config.json holds."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from `to_dict()` output (config.json); unknown keys are an error."""
        return _build(cls, data, "")


# --------------------------------------------------------------------------------------------------------------
# Schema walking


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def config_keys(cls: type = TrainConfig, prefix: str = "") -> list[str]:
    """Every dotted key the config accepts (`optim.lr`, `data.aug.rotate`, ...)."""
    keys: list[str] = []
    for name, tp in _hints(cls).items():
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(tp):
            keys.extend(config_keys(tp, key + "."))  # type: ignore[arg-type]
        else:
            keys.append(key)
    return keys


def _unknown_key(key: str) -> ConfigKeyError:
    close = difflib.get_close_matches(key, config_keys(), n=3, cutoff=0.5)
    leaf = key.rsplit(".", 1)[-1]
    close += [k for k in config_keys() if k.rsplit(".", 1)[-1] == leaf and k not in close]
    return ConfigKeyError(key, close[:4])


def _build(cls: Any, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise BadInputError(f"config section {prefix.rstrip('.') or '<root>'!r} must be a table", "see the presets")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in hints:
            raise _unknown_key(key)
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key + ".")
        else:
            kwargs[name] = coerce(value, tp, key)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # a section's own range checks (__post_init__)
        raise BadInputError(
            f"config section {prefix.rstrip('.')!r}: {exc}", "fix that value in the --config file or --set override"
        ) from None


# --------------------------------------------------------------------------------------------------------------
# Files, presets, overrides


def preset_path(name: str) -> Path:
    """The TOML file of a named preset; unknown name -> BadInputError listing the presets."""
    if name not in PRESETS:
        raise UnknownName("preset", name, PRESETS)
    return Path(str(resources.files("chexvision").joinpath("presets", f"{name}.toml")))


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BadInputError(f"config file {path} not found", "pass an existing TOML or JSON file to --config")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInputError(f"config file {path} is not valid {path.suffix or 'TOML'}: {exc}", "fix it") from None
    if not isinstance(data, dict):
        raise BadInputError(f"config file {path} must hold a table/object", "see chexvision/presets/smoke.toml")
    return data


def _split_layer(layer: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    base = {k: v for k, v in layer.items() if k != "models"}
    sections = layer.get("models", {})
    if not isinstance(sections, dict) or not all(isinstance(v, dict) for v in sections.values()):
        raise BadInputError(f"{source}: [models.<name>] sections must be tables", "see chexvision/presets/")
    _build(TrainConfig, base, "")  # validate early so the error names the file's key
    for name, section in sections.items():
        try:
            _build(TrainConfig, section, "")
        except BadInputError as exc:
            raise BadInputError(f"{source} [models.{name}]: {exc.message}", exc.hint) from None
    return base, sections


def _parse_override(item: str) -> tuple[str, str]:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise BadInputError(f"override {item!r} is not key=value", "e.g. --set optim.lr=3e-4")
    return key, raw.strip()


def _apply_override(cfg: TrainConfig, key: str, raw: str) -> None:
    parts = key.split(".")
    obj: Any = cfg
    for i, part in enumerate(parts):
        if isinstance(obj, dict):  # free-form model.kwargs.<name>
            if i != len(parts) - 1:
                raise _unknown_key(key)
            obj[part] = parse_value(raw, Any, key)
            return
        hints = _hints(type(obj))
        if part not in hints:
            raise _unknown_key(key)
        tp = hints[part]
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(tp):
                raise BadInputError(f"config key {key!r} is a section", f"set one of its keys, e.g. {key}.<name>=...")
            value = parse_value(raw, tp, key)
            if raw.lower() in ("none", "null") and type(None) in typing.get_args(tp):
                value = None
            setattr(obj, part, coerce(value, tp, key))
            return
        obj = getattr(obj, part)


def load_config(
    preset: str | None = None, file: Path | None = None, overrides: typing.Sequence[str] = ()
) -> TrainConfig:
    """Resolve preset, then file, then `key=value` overrides into a validated TrainConfig.

    Per-model sections (`[models.<name>...]`) of each layer apply right after that layer's base keys, for the
    model named by the last of: preset, file, `model.name=` override.
    """
    layers: list[tuple[str, dict[str, Any]]] = []
    if preset is not None:
        layers.append((f"preset {preset}", tomllib.loads(preset_path(preset).read_text(encoding="utf-8"))))
    if file is not None:
        layers.append((str(file), _read_file(Path(file))))
    parsed = [_parse_override(item) for item in overrides]

    split = [_split_layer(layer, source) for source, layer in layers]
    model = ModelConfig().name
    for base, _ in split:
        model = base.get("model", {}).get("name", model)
    for key, raw in parsed:
        if key == "model.name":
            model = str(parse_value(raw, str, key))

    tree: dict[str, Any] = {}
    for base, sections in split:
        tree = merge(tree, base)
        tree = merge(tree, sections.get(model, {}))
    tree.setdefault("preset", preset)
    cfg: TrainConfig = _build(TrainConfig, tree, "")
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: TrainConfig, overrides: typing.Sequence[str]) -> TrainConfig:
    """A copy of `cfg` with `key=value` overrides applied and every section re-validated."""
    if not overrides:
        return cfg
    out = TrainConfig.from_dict(cfg.to_dict())
    for key, raw in map(_parse_override, overrides):
        _apply_override(out, key, raw)
    return TrainConfig.from_dict(out.to_dict())  # re-run each section's own checks (AugConfig)
