"""CheXVision: train, evaluate and publish chest X-ray pathology classifiers (NIH ChestX-ray14).

Nothing heavy happens at import: torch is imported only by the modules that hold tensors, and `load` imports them
when it is called.

    >>> import chexvision
    >>> predictor = chexvision.load("owner/chexvision-densenet@v1")  # or a run / --hub-dir folder, FOLDER@TAG
    >>> predictor.predict("chest.png").probabilities["Effusion"]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chexvision.inference.predictor import Predictor

__version__ = "0.1.0"
__all__ = ["Predictor", "__version__", "load"]


def load(spec: str | Path, *, device: str = "auto") -> Predictor:
    """A `Predictor` for a model: `owner/name[@revision]` on the Hub, a run or `--hub-dir` folder, or `FOLDER@TAG`.

    `predictor.predict(image_or_path)` gives the 14 finding probabilities, the abnormal probability and the
    abnormal call at each operating point evaluation recorded (`decisions`). `device`: cpu | cuda | auto.
    """
    from chexvision.hub.resolve import load_predictor

    return load_predictor(spec, device=device)


def __getattr__(name: str) -> Any:
    if name == "Predictor":  # imported on first use: it pulls in numpy and the inference package
        from chexvision.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
