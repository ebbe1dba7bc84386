"""Image files -> the uint8 gray arrays a model's preprocessing takes: PNG or JPEG (gray, RGB or RGBA; 8 or 16 bit)
and DICOM.

DICOM goes through pydicom (the `demo` extra) as a viewer would show it: the modality LUT (rescale slope and
intercept, or a Modality LUT Sequence) first, then the VOI LUT or the window (centre and width) the file carries,
scaled to 8 bits over the output range of that window; MONOCHROME1 (0 = white) is inverted so bone is always
bright, as in the NIH PNGs. Without a window the used range is stretched, the rule for 16-bit PNGs. A compressed
transfer syntax that no installed pydicom plugin decodes is one line naming it and the plugins that would.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chexvision.data.shards import ImageDecodeError, decode_image
from chexvision.errors import BadInputError

__all__ = ["DICOM_SUFFIXES", "IMAGE_HINT", "DicomImage", "decode_bytes", "decode_dicom", "is_dicom", "read_image"]

IMAGE_HINT = "pass PNG, JPEG (gray, RGB or RGBA; 8 or 16 bit) or DICOM files"
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
DICOM_EXTRA = "pip install 'chexvision[demo]' (or pip install pydicom)"
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")


@dataclass(frozen=True)
class DicomImage:
    """A decoded DICOM radiograph and how it was turned into 8-bit gray (for a caption)."""

    pixels: np.ndarray  # uint8 HxW, bone bright
    photometric: str  # PhotometricInterpretation as stored
    voi: str | None  # "window C/W" or "VOI LUT", None when the used range was stretched
    frames: int  # number of frames in the file (the first is used)
    transfer_syntax: str

    def describe(self) -> str:
        parts = [f"DICOM {self.photometric}" + (" (inverted)" if self.photometric == "MONOCHROME1" else "")]
        parts.append(f"{self.voi} applied" if self.voi else "no window in the file: used range stretched")
        if self.frames > 1:
            parts.append(f"frame 1 of {self.frames}")
        parts.append(self.transfer_syntax)
        return ", ".join(parts)


def is_dicom(data: bytes, name: str = "") -> bool:
    """A DICOM Part 10 file ("DICM" after the 128-byte preamble), or a file named .dcm/.dicom/.dic."""
    return data[128:132] == b"DICM" or Path(name).suffix.lower() in DICOM_SUFFIXES


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to uint8 HxW gray; an unreadable file is a BadInputError naming it."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"image {path} not found", "check the path") from None
    except IsADirectoryError:
        raise BadInputError(f"image {path} is a folder, not an image file", IMAGE_HINT) from None
    except OSError as exc:
        raise BadInputError(f"cannot read image {path}: {exc}", IMAGE_HINT) from exc
    return decode_bytes(data, str(path))


def decode_bytes(data: bytes, name: str) -> np.ndarray:
    """The bytes of a PNG, JPEG or DICOM file (an upload, a file read) -> uint8 HxW gray; errors name `name`."""
    if is_dicom(data, name):
        return decode_dicom(data, name).pixels
    try:
        return decode_image(data)
    except ImageDecodeError as exc:
        raise BadInputError(f"cannot read image {name}: {exc}", IMAGE_HINT) from exc


def _import_pydicom() -> Any:
    try:
        import pydicom
        import pydicom.pixels
    except ImportError:
        raise BadInputError("reading DICOM files needs pydicom, which is not installed", DICOM_EXTRA) from None
    return pydicom


def decode_dicom(data: bytes, name: str) -> DicomImage:
    """A DICOM file's first frame as a viewer shows it (module docstring); a BadInputError naming `name` otherwise."""
    with warnings.catch_warnings():  # a damaged header warns before it fails: the one line below says it all
        warnings.simplefilter("ignore")
        return _decode_dicom(_import_pydicom(), data, name)


def _decode_dicom(pydicom: Any, data: bytes, name: str) -> DicomImage:
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many types for a damaged file; all mean "not readable"
        raise BadInputError(f"cannot read DICOM {name}: {_first_line(exc)}", IMAGE_HINT) from exc
    if "PixelData" not in ds:
        raise BadInputError(f"DICOM {name} holds no image (no Pixel Data)", "pass the radiograph, not a report")
    syntax = _transfer_syntax(ds)
    _check_decoder(pydicom, syntax, name)
    try:
        arr = np.asarray(ds.pixel_array)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            arr = arr[0]
        if photometric in _MONOCHROME:
            pixels, voi = _monochrome(pydicom, arr, ds)
        elif photometric in _COLOUR:  # pydicom hands YBR back as RGB
            pixels, voi = _colour(arr), None
        else:
            raise BadInputError(
                f"DICOM {name} has photometric interpretation {photometric}",
                "pass a MONOCHROME1, MONOCHROME2 or RGB radiograph",
            )
    except BadInputError:
        raise
    except Exception as exc:  # a truncated pixel buffer, an inconsistent header, a decoder failure
        raise BadInputError(f"cannot decode the pixels of DICOM {name}: {_first_line(exc)}", IMAGE_HINT) from exc
    if pixels.ndim != 2 or min(pixels.shape) == 0:
        raise BadInputError(f"DICOM {name} is not a 2-D image (pixel array {arr.shape})", "pass one radiograph")
    return DicomImage(pixels, photometric, voi, frames, f"{syntax.name} ({syntax})" if syntax else "no transfer syntax")


def _transfer_syntax(ds: Any) -> Any:
    meta = getattr(ds, "file_meta", None)
    return getattr(meta, "TransferSyntaxUID", None) if meta is not None else None


def _check_decoder(pydicom: Any, syntax: Any, name: str) -> None:
    """A compressed transfer syntax without an available decoder: one line saying which and what would decode it."""
    if syntax is None or not getattr(syntax, "is_compressed", False):
        return
    try:
        decoder = pydicom.pixels.get_decoder(syntax)
    except NotImplementedError:
        raise BadInputError(
            f"DICOM {name} is compressed as {syntax.name} ({syntax}), which pydicom cannot decode",
            "export it uncompressed (Explicit VR Little Endian), e.g. `gdcmconv --raw in.dcm out.dcm`",
        ) from None
    if decoder.is_available:
        return
    plugins = "; ".join(decoder.missing_dependencies)  # e.g. 'pylibjpeg - requires pylibjpeg>=2.0 and ...'
    raise BadInputError(
        f"DICOM {name} is compressed as {syntax.name} ({syntax}) and no installed decoder reads it",
        f"install one ({plugins}) or export it uncompressed (`gdcmconv --raw in.dcm out.dcm`)",
    )


def _monochrome(pydicom: Any, arr: np.ndarray, ds: Any) -> tuple[np.ndarray, str | None]:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(arr, ds)
    voi = _voi_name(ds)
    if voi is not None:
        values = apply_voi_lut(values, ds)
        lo, hi = _voi_output_range(ds, apply_modality_lut, apply_voi_lut)
    else:
        lo, hi = float(np.min(values)), float(np.max(values))
    if hi <= lo:  # a degenerate window or a constant image: fall back to what the pixels use
        lo, hi = float(np.min(values)), float(np.max(values))
    scaled = (np.asarray(values, dtype=np.float64) - lo) * (255.0 / max(hi - lo, 1e-12))
    gray = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        gray = 255 - gray  # 0 is white in MONOCHROME1
    return np.ascontiguousarray(gray), voi


def _voi_name(ds: Any) -> str | None:
    """What apply_voi_lut will apply (it prefers the VOI LUT Sequence over the window), None for nothing."""
    seq = ds.get("VOILUTSequence")
    if seq and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None:
        return "VOI LUT"
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        centre, width = ds.WindowCenter, ds.WindowWidth
        centre = centre[0] if ds["WindowCenter"].VM > 1 else centre
        width = width[0] if ds["WindowWidth"].VM > 1 else width
        return f"window C {float(centre):g} / W {float(width):g}"
    return None


def _voi_output_range(ds: Any, modality: Any, voi: Any) -> tuple[float, float]:
    """The output range of the file's window or VOI LUT: pydicom's own functions applied to the extremes of the
    stored values, so the window, not the pixels, fixes black and white."""
    bits = int(ds.get("BitsStored", 16) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    stored = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if signed else [0, 2**bits - 1], dtype=np.int64)
    ends = np.asarray(voi(modality(stored, ds), ds), dtype=np.float64)
    return float(ends.min()), float(ends.max())


def _colour(arr: np.ndarray) -> np.ndarray:
    import cv2

    from chexvision.data.shards import to_gray_u8

    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"colour pixel array has shape {arr.shape}")
    rgb = arr if arr.dtype in (np.uint8, np.uint16) else arr.astype(np.uint16)
    return to_gray_u8(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
