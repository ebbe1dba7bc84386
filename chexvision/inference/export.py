"""A trained model as an ONNX or TorchScript file, checked against PyTorch on sample images.

The exported graph takes the preprocessed image batch `image` [N, 1, S, S] (float32; the model's own resize, CLAHE
and normalisation happen before it, exactly as `chexvision.inference.preprocess` does them) and returns two logit
tensors: `findings` [N, 14] (columns in `model.labels` order) and `abnormal` [N]; apply a sigmoid to each. The
batch axis is dynamic.

Parity: the same sample batch goes through PyTorch and through the exported file (onnxruntime for ONNX,
`torch.jit.load` for TorchScript); the largest absolute difference of the probabilities is reported, and above
`tolerance` the export fails (`ExportParityError`, the file is removed). The sample images are the files passed
in, else synthetic chest X-rays drawn at the model's size (`chexvision.data.synthetic`).

onnx, onnxruntime and onnxscript come with the `export` extra (`pip install 'chexvision[export]'`) and are
imported only here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from chexvision.errors import BadInputError, RunFailedError
from chexvision.inference.images import read_image

if TYPE_CHECKING:
    import torch
    from torch import nn

    from chexvision.inference.load import LoadedModel

__all__ = ["EXPORT_FORMATS", "ExportParityError", "ExportResult", "export_model", "sample_images"]

Format = Literal["onnx", "torchscript"]
EXPORT_FORMATS: tuple[str, ...] = ("onnx", "torchscript")
DEFAULT_TOLERANCE = 1e-4  # on probabilities; float32 kernels differ by ~1e-6
INPUT_NAME = "image"
OUTPUT_NAMES = ("findings", "abnormal")
_EXTRA = {"onnx": ("onnx", "onnxruntime", "onnxscript")}

log = logging.getLogger(__name__)


class ExportParityError(RunFailedError):
    """The exported file's outputs differ from PyTorch's by more than the tolerance (exit 1)."""


@dataclass(frozen=True)
class ExportResult:
    """What was written and how close it is to PyTorch (probabilities, max abs difference over the samples)."""

    path: str
    format: str
    model: str
    input_size: int
    samples: int
    batch_sizes: tuple[int, ...]
    max_abs_diff: float
    tolerance: float
    passed: bool
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "batch_sizes": list(self.batch_sizes)}


def require_extra(fmt: str) -> None:
    missing = [name for name in _EXTRA.get(fmt, ()) if importlib.util.find_spec(name) is None]
    if missing:
        raise BadInputError(
            f"{fmt} export needs {', '.join(missing)} (the `export` extra)", "pip install 'chexvision[export]'"
        )


class _PlainOutputs:
    """Wraps a CheXModel so the traced graph returns a plain (findings, abnormal) tuple."""

    @staticmethod
    def wrap(model: nn.Module) -> nn.Module:
        from torch import Tensor, nn

        class Plain(nn.Module):
            def __init__(self, inner: nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
                findings, abnormal = self.inner(image)
                return findings, abnormal

        return Plain(model).eval()


def sample_images(loaded: LoadedModel, images: Sequence[str | Path] = (), *, n: int = 4, seed: int = 0) -> np.ndarray:
    """The preprocessed batch [N, 1, S, S] float32 parity is checked on: `images`, else `n` synthetic X-rays."""
    transform = loaded.transform()
    if images:
        decoded = [read_image(Path(p)) for p in images]
    else:
        from chexvision.data.synthetic.anatomy import patient_anatomy
        from chexvision.data.synthetic.render import render_image

        rng = np.random.default_rng(seed)
        decoded = [render_image(frozenset(), transform.size, rng, patient_anatomy(rng)).image for _ in range(n)]
    return np.stack([transform(img) for img in decoded]).astype(np.float32)


def _probs(findings: np.ndarray, abnormal: np.ndarray) -> np.ndarray:
    logits = np.concatenate([np.asarray(findings, np.float64), np.asarray(abnormal, np.float64).reshape(-1, 1)], 1)
    return 1.0 / (1.0 + np.exp(-logits))


@contextlib.contextmanager
def _quiet() -> Any:
    """The exporters print progress and deprecation chatter to stdout/stderr; keep the CLI's output ours."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        level = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(level)


def _export_onnx(model: nn.Module, example: torch.Tensor, out: Path) -> None:
    import torch

    batch = torch.export.Dim("batch", min=1, max=4096)
    with _quiet():
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"image": {0: batch}},
            external_data=False,
            verbose=False,
        )
        assert program is not None
        program.save(str(out))


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    findings, abnormal = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
    return _probs(findings, abnormal)


def _export_torchscript(model: nn.Module, example: torch.Tensor, out: Path) -> None:
    import torch

    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(out))


def _run_torchscript(path: Path, x: np.ndarray) -> np.ndarray:
    import torch

    with _quiet():
        scripted = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        findings, abnormal = scripted(torch.from_numpy(x))
    return _probs(findings.numpy(), abnormal.numpy())


def export_model(
    loaded: LoadedModel,
    fmt: str,
    out: Path,
    *,
    images: Sequence[str | Path] = (),
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportResult:
    """Write `loaded`'s model to `out` as `fmt` (onnx | torchscript), then check it against PyTorch.

    The graph is traced on CPU in float32 with a batch of 2; parity runs the full sample batch and single images,
    so a batch axis that did not stay dynamic fails here rather than in a user's hands.
    """
    import torch

    if fmt not in EXPORT_FORMATS:
        raise BadInputError(f"unknown export format {fmt!r}", f"choose one of {', '.join(EXPORT_FORMATS)}")
    require_extra(fmt)
    out = Path(out)
    if out.is_dir():
        raise BadInputError(f"--out {out} is a folder", f"name the file to write, e.g. {out / ('model.' + fmt)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    x = sample_images(loaded, images)
    model = _PlainOutputs.wrap(loaded.model.float().cpu().eval())
    example = torch.from_numpy(np.concatenate([x, x])[:2])
    with torch.no_grad():
        reference = _probs(*(t.numpy() for t in model(torch.from_numpy(x))))
    export, run = (_export_onnx, _run_onnx) if fmt == "onnx" else (_export_torchscript, _run_torchscript)
    export(model, example, out)
    batches = (len(x), 1)
    got = [run(out, x), *(run(out, x[i : i + 1]) for i in range(min(len(x), 2)))]
    want = [reference, *(reference[i : i + 1] for i in range(min(len(x), 2)))]
    diff = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want, strict=True))
    result = ExportResult(
        path=str(out), format=fmt, model=loaded.name, input_size=int(x.shape[-1]), samples=len(x),
        batch_sizes=batches, max_abs_diff=diff, tolerance=tolerance, passed=diff <= tolerance,
        bytes=out.stat().st_size,
    )  # fmt: skip
    if not result.passed:
        out.unlink(missing_ok=True)
        raise ExportParityError(
            f"{fmt} export of {loaded.name} differs from PyTorch by {diff:.2e} (tolerance {tolerance:.0e}); "
            f"{out} removed",
            "export on CPU with a current torch/onnxruntime, or raise --tolerance if the difference is expected",
        )
    return result
