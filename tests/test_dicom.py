"""DICOM input (`chexvision.inference.images`): files written here with pydicom, read back as a viewer shows them.

MONOCHROME2 and MONOCHROME1 (inverted), 16-bit with a window and with a rescale, a VOI LUT Sequence, a compressed
transfer syntax without a decoder (one line naming it), a damaged file; and `chexvision predict` on a DICOM file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

pydicom = pytest.importorskip("pydicom")

from pydicom.dataset import FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, generate_uid  # noqa: E402

from chexvision.cli.main import app  # noqa: E402
from chexvision.errors import BadInputError  # noqa: E402
from chexvision.inference.images import decode_bytes, decode_dicom, read_image  # noqa: E402


def _ramp(bits: int = 12) -> np.ndarray:
    """A 32x48 horizontal ramp over the whole stored range: column 0 is 0, the last column 2**bits - 1."""
    row = np.linspace(0, 2**bits - 1, 48).round().astype(np.uint16)
    return np.repeat(row[None], 32, axis=0)


def write_dicom(path: Path, pixels: np.ndarray, *, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
                syntax: Any = ExplicitVRLittleEndian, **elements: Any) -> Path:  # fmt: skip
    """A minimal secondary-capture DICOM file of `pixels` (uint8 or uint16) with the given extra elements."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 * pixels.dtype.itemsize
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for key, value in elements.items():
        setattr(ds, key, value)
    if syntax.is_compressed:  # bytes that only look encapsulated: the decoder check must answer first
        ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xf7" + bytes(64)])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_monochrome2_8bit_reads_as_stored(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (32, 48), dtype=np.uint8)
    pixels[0, :2] = (0, 255)  # the full 8-bit range is used: the stretch changes nothing
    out = read_image(write_dicom(tmp_path / "a.dcm", pixels))
    assert out.dtype == np.uint8 and out.shape == (32, 48)
    assert np.array_equal(out, pixels)


def test_monochrome1_is_inverted_so_bone_stays_bright(tmp_path: Path) -> None:
    ramp = _ramp(12)
    mono2 = read_image(write_dicom(tmp_path / "m2.dcm", ramp, bits_stored=12))
    mono1 = read_image(write_dicom(tmp_path / "m1.dcm", ramp, photometric="MONOCHROME1", bits_stored=12))
    assert mono2[0, 0] == 0 and mono2[0, -1] == 255
    assert np.array_equal(mono1, 255 - mono2)
    info = decode_dicom((tmp_path / "m1.dcm").read_bytes(), "m1.dcm")
    assert info.photometric == "MONOCHROME1" and "inverted" in info.describe()


def test_16bit_window_sets_black_and_white(tmp_path: Path) -> None:
    """A window of centre 2048 and width 1024 over a 12-bit ramp: below 1536 black, above 2560 white, linear
    between, whatever the pixels' own range is."""
    ramp = _ramp(12)
    path = write_dicom(tmp_path / "w.dcm", ramp, bits_stored=12, WindowCenter=2048, WindowWidth=1024)
    out = read_image(path)
    values = ramp[0].astype(float)
    assert (out[0][values < 1500] == 0).all() and (out[0][values > 2600] == 255).all()
    inside = (values > 1600) & (values < 2500)
    assert inside.sum() >= 10
    assert np.all(np.diff(out[0][inside].astype(int)) >= 0)  # monotone inside the window
    linear = ((values[inside] - 2047.5) / 1023 + 0.5) * 255  # DICOM PS3.3 C.11.2.1.2.1, LINEAR
    assert np.abs(out[0][inside] - linear).max() <= 1.0
    assert decode_dicom(path.read_bytes(), "w.dcm").voi == "window C 2048 / W 1024"


def test_window_applies_after_the_rescale(tmp_path: Path) -> None:
    """Rescale slope/intercept (the modality LUT) come first: a window given in rescaled units (here -1024 + v)."""
    ramp = _ramp(12)
    plain = read_image(write_dicom(tmp_path / "a.dcm", ramp, bits_stored=12, WindowCenter=2048, WindowWidth=1024))
    rescaled = read_image(write_dicom(tmp_path / "b.dcm", ramp, bits_stored=12, RescaleSlope=1, RescaleIntercept=-1024,
                                      WindowCenter=1024, WindowWidth=1024))  # fmt: skip
    assert np.abs(plain.astype(int) - rescaled.astype(int)).max() <= 1


def test_no_window_stretches_the_used_range(tmp_path: Path) -> None:
    narrow = (_ramp(12) // 4 + 1000).astype(np.uint16)  # 1000..2023 of 4095
    out = read_image(write_dicom(tmp_path / "n.dcm", narrow, bits_stored=12))
    assert out.min() == 0 and out.max() == 255
    assert decode_dicom((tmp_path / "n.dcm").read_bytes(), "n.dcm").voi is None


def test_voi_lut_sequence_is_applied(tmp_path: Path) -> None:
    """A VOI LUT that maps the 12-bit range to 8 bits inverted: the output follows the LUT, not the pixels."""
    lut = pydicom.Dataset()
    lut.LUTDescriptor = [4096, 0, 8]
    lut.add_new("LUTData", "US", list(range(255, -1, -1)) * 16)  # 4096 entries, a saw-tooth: 255..0 repeated
    ramp = _ramp(12)
    out = read_image(write_dicom(tmp_path / "l.dcm", ramp, bits_stored=12, VOILUTSequence=[lut]))
    expected = np.array(lut.LUTData, dtype=np.uint8)[ramp[0]]
    assert np.abs(out[0].astype(int) - expected.astype(int)).max() <= 1


def test_compressed_without_a_decoder_is_one_clear_line(tmp_path: Path) -> None:
    from pydicom.pixels import get_decoder

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    path = write_dicom(tmp_path / "c.dcm", _ramp(12), bits_stored=12, syntax=JPEGLSLossless)
    with pytest.raises(BadInputError) as err:
        read_image(path)
    line = err.value.one_line()
    assert "c.dcm" in line and "JPEG-LS Lossless" in line and "no installed decoder" in line
    assert "pylibjpeg" in line and "uncompressed" in line and "\n" not in line


def test_damaged_and_imageless_dicom_are_bad_input(tmp_path: Path) -> None:
    good = write_dicom(tmp_path / "g.dcm", _ramp(12), bits_stored=12).read_bytes()
    with pytest.raises(BadInputError, match=r"t\.dcm"):
        decode_bytes(good[: len(good) - 500], "t.dcm")  # pixel data cut short
    with pytest.raises(BadInputError, match=r"no Pixel Data|cannot read DICOM"):
        decode_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage", "x.dcm")
    with pytest.raises(BadInputError, match=r"cannot read image y\.png"):
        decode_bytes(b"not a png", "y.png")


def test_predict_reads_dicom_like_the_same_png(tmp_path: Path, make_run_dir: Callable[..., Path]) -> None:
    import cv2

    run = make_run_dir(tmp_path / "run")
    ramp = _ramp(12)
    dcm = write_dicom(tmp_path / "x.dcm", ramp, bits_stored=12)
    png = tmp_path / "x.png"
    assert cv2.imwrite(str(png), read_image(dcm))
    res = CliRunner().invoke(app, ["predict", str(dcm), str(png), "--model", str(run), "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert rows[0]["probabilities"] == pytest.approx(rows[1]["probabilities"], abs=1e-6)
    compressed = write_dicom(tmp_path / "c.dcm", ramp, bits_stored=12, syntax=JPEGLSLossless)
    bad = CliRunner().invoke(app, ["predict", str(compressed), "--model", str(run)])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: DICOM") and "c.dcm" in bad.stderr, bad.output
