"""Loaders over shards: shapes, dtypes, label alignment, determinism, corrupt images, samplers, bench CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.data.loader import BlockShuffleSampler, ContiguousShardSampler, Loaders, make_loaders
from chexvision.data.shards import ShardRow, encode_png, write_shard
from chexvision.data.transforms import MEAN, STD, AugConfig
from chexvision.errors import BadInputError
from chexvision.labels import is_abnormal, labels_to_vector

STORED, SIZE = 48, 32
LABEL_SETS = ["No Finding", "Effusion", "Cardiomegaly|Effusion", "Mass|Nodule", "Hernia", "Atelectasis|Edema"]
CPU = torch.device("cpu")
CORRUPT = frozenset({3, 17, 40})


def _rows(n: int, corrupt: frozenset[int] = frozenset()) -> list[ShardRow]:
    """Image k is a constant grey level 10 + 3k, so a sample's image says which row it came from."""
    rows = []
    for k in range(n):
        image = b"\x89PNG broken" if k in corrupt else encode_png(np.full((STORED, STORED), 10 + 3 * k, np.uint8))
        # 2 images per patient; ids from 90000000 like the synthetic data
        name = f"{90000000 + k // 2:08d}_{k % 2:03d}.png"
        rows.append(ShardRow(filename=name, labels=LABEL_SETS[k % len(LABEL_SETS)], image=image))
    return rows


def _write(root: Path, rows: list[ShardRow]) -> Path:
    half = len(rows) // 2
    write_shard(root / "data" / "data-00000-of-00002.parquet", rows[:half], row_group_size=8)
    write_shard(root / "data" / "data-00001-of-00002.parquet", rows[half:], row_group_size=8)
    (root / "dataset.json").write_text(json.dumps({"source": "synthetic", "default_split_scheme": "patient"}))
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("tiny"), _rows(60))


@pytest.fixture(scope="module")
def corrupt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("corrupt"), _rows(60, corrupt=CORRUPT))


def _loaders(data: Path, **kw: object) -> Loaders:
    args: dict[str, object] = dict(
        size=SIZE, batch_size=8, split_scheme=None, seed=0, workers=0, device=CPU, aug=AugConfig()
    )
    args.update(kw)
    return make_loaders(data, **args)  # type: ignore[arg-type]


def _row_of(x: torch.Tensor) -> np.ndarray:
    """Recover each sample's row from its (unaugmented, normalised) constant grey level."""
    grey = (x.float().mean(dim=(1, 2, 3)) * STD + MEAN) * 255.0
    return np.rint((grey.numpy() - 10) / 3).astype(int)


def _check_alignment(loaders: Loaders, split: str, corrupt: frozenset[int] = frozenset()) -> int:
    rows = _rows(60)
    seen = 0
    loader = getattr(loaders, split)
    for batch in loader:
        x, y14, ybin = loaders.batch_to_device(batch, train=split == "train")
        for k, y, b in zip(_row_of(x), y14, ybin, strict=True):
            assert k not in corrupt
            np.testing.assert_array_equal(y.numpy(), labels_to_vector(rows[k].labels))
            assert float(b) == is_abnormal(rows[k].labels)
        seen += len(x)
    return seen


@pytest.mark.parametrize("mode", ["cpu", "gpu"], ids=["cpu_path", "gpu_path"])  # "gpu" alone = the CUDA marker
def test_batches_have_the_contract_shapes_and_dtypes(data_dir: Path, mode: str) -> None:
    loaders = _loaders(data_dir, mode=mode)
    assert loaders.mode == mode and loaders.split_scheme == "patient" and loaders.clahe is False
    assert sum(loaders.counts.values()) == 60
    assert loaders.train_labels.shape == (loaders.counts["train"], 14)
    assert loaders.train is not None
    images, _, _ = next(iter(loaders.train))
    assert images.dtype == (torch.uint8 if mode == "gpu" else torch.float32)
    for train in (True, False):
        loader = loaders.train if train else loaders.val
        assert loader is not None
        x, y14, ybin = loaders.batch_to_device(next(iter(loader)), train=train)
        assert x.shape[1:] == (1, SIZE, SIZE) and x.dtype == torch.float32 and torch.isfinite(x).all()
        assert y14.shape == (x.shape[0], 14) and y14.dtype == torch.float32
        assert ybin.shape == (x.shape[0],) and ybin.dtype == torch.float32


@pytest.mark.parametrize("mode", ["cpu", "gpu"], ids=["cpu_path", "gpu_path"])
def test_eval_batches_use_the_configured_normalisation(data_dir: Path, mode: str) -> None:
    plain = _loaders(data_dir, mode=mode, mean=0.0, std=1.0)  # no shift, no scale: pixels / 255
    default = _loaders(data_dir, mode=mode)
    assert plain.val is not None and default.val is not None
    x, _, _ = plain.batch_to_device(next(iter(plain.val)), train=False)
    y, _, _ = default.batch_to_device(next(iter(default.val)), train=False)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    torch.testing.assert_close(y, (x - MEAN) / STD, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["cpu", "gpu"], ids=["cpu_path", "gpu_path"])  # "gpu" alone = the CUDA marker
def test_labels_stay_with_their_images_when_shuffled(data_dir: Path, mode: str) -> None:
    loaders = _loaders(data_dir, mode=mode, aug=AugConfig(enabled=False))
    seen = _check_alignment(loaders, "train")
    assert seen == loaders.counts["train"] // 8 * 8  # drop_last on train
    assert _check_alignment(loaders, "test") == loaders.counts["test"]


def test_train_order_is_shuffled_and_changes_per_epoch(data_dir: Path) -> None:
    loaders = _loaders(data_dir, aug=AugConfig(enabled=False))
    assert loaders.train is not None
    epoch1 = np.concatenate([_row_of(b[0]) for b in loaders.train])
    epoch2 = np.concatenate([_row_of(b[0]) for b in loaders.train])
    assert not np.array_equal(epoch1, np.sort(epoch1))
    assert not np.array_equal(epoch1, epoch2)


def test_same_seed_same_batches_any_worker_count(data_dir: Path) -> None:
    def first_batches(seed: int, workers: int) -> list[torch.Tensor]:
        loaders = _loaders(data_dir, seed=seed, workers=workers)
        assert loaders.train is not None
        return [loaders.batch_to_device(b, train=True)[0] for b in loaders.train]

    a, b = first_batches(0, 0), first_batches(0, 2)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    c = first_batches(1, 0)
    assert not torch.equal(a[0], c[0])


def test_gpu_path_is_seeded(data_dir: Path) -> None:
    def run() -> torch.Tensor:
        loaders = _loaders(data_dir, mode="gpu")
        assert loaders.train is not None
        loaders.set_epoch(3)
        return loaders.batch_to_device(next(iter(loaders.train)), train=True)[0]

    assert torch.equal(run(), run())


def test_corrupt_images_are_skipped_counted_and_do_not_shift_labels(
    corrupt_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loaders = _loaders(corrupt_dir, aug=AugConfig(enabled=False), split_scheme="patient")
    seen = sum(_check_alignment(loaders, part, corrupt=CORRUPT) for part in ("val", "test"))
    assert seen + loaders.skipped == loaders.counts["val"] + loaders.counts["test"]
    seen += _check_alignment(loaders, "train", corrupt=CORRUPT)
    assert loaders.skipped == 3  # one pass over every split; none of them in the dropped ragged batch here
    assert "data-0000" in caplog.text and "row" in caplog.text


def test_strict_mode_fails_naming_file_and_row(corrupt_dir: Path) -> None:
    loaders = _loaders(corrupt_dir, strict=True)
    with pytest.raises(BadInputError) as err:
        for part in (loaders.train, loaders.val, loaders.test):
            for _ in part or ():
                pass
    assert "data-0000" in err.value.message and " row " in err.value.message


def test_block_shuffle_sampler_shares_are_disjoint_and_equal() -> None:
    groups = [np.arange(i, min(i + 8, 45)) for i in range(0, 45, 8)]
    shares = [list(BlockShuffleSampler(groups, seed=0, num_replicas=2, rank=r)) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 22
    flat = [k for share in shares for k, _ in share]
    assert len(set(flat)) == 44 and set(flat) <= set(range(45))


def test_eval_sampler_shares_cover_everything_once() -> None:
    shares = [list(ContiguousShardSampler(11, num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(k for s in shares for k in s) == list(range(11))


def test_bench_loader_cli_json(data_dir: Path) -> None:
    for mode in ("cpu", "gpu"):
        args = ["bench", "loader", "--data", str(data_dir), "--batches", "1", "--batch-size", "4", "--rounds", "2"]
        result = CliRunner().invoke(app, [*args, "--size", str(SIZE), "--mode", mode, "--json"])
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        for key, kind in [
            ("images_per_second", float),
            ("workers", int),
            ("size", int),
            ("mode", str),
            ("baseline_images_per_second", float),
            ("albumentations_images_per_second", float),
            ("albumentations_speedup", float),
            ("decode_only_images_per_cpu_second", float),
            ("decode_fraction", float),
        ]:
            assert isinstance(out[key], kind), key
        assert out["size"] == SIZE and out["mode"] == mode and out["images_per_second"] > 0
        assert out["rounds"] == 2 and out["images_timed"] == 8  # 1 batch of 4 per round
        assert (
            "RandomErasing(p 0.1, scale 0.02-0.08" in out["baseline"] and "albumentations 2." in out["albumentations"]
        )
        if mode == "gpu" and not torch.cuda.is_available():
            assert out["gpu_augment"] == "skipped, no CUDA"


def test_bench_loader_human_output_and_skipping_baselines(data_dir: Path) -> None:
    args = ["bench", "loader", "--data", str(data_dir), "--batches", "1", "--batch-size", "4", "--rounds", "1"]
    result = CliRunner().invoke(app, [*args, "--size", str(SIZE), "--mode", "cpu"])
    assert result.exit_code == 0, result.output
    assert "albumentations" in result.stdout and "original" in result.stdout and "decoder's speed" in result.stdout
    quick = CliRunner().invoke(app, [*args, "--mode", "cpu", "--no-baseline", "--no-albumentations", "--json"])
    assert quick.exit_code == 0, quick.output
    out = json.loads(quick.stdout)
    assert out["baseline_images_per_second"] is None and out["albumentations_images_per_second"] is None
    assert out["interpolation"] == "nearest"  # the default
    quick = CliRunner().invoke(
        app, [*args, "--no-baseline", "--no-albumentations", "--json", "--interpolation", "bilinear"]
    )
    assert quick.exit_code == 0 and json.loads(quick.stdout)["interpolation"] == "bilinear"
    bad = CliRunner().invoke(app, [*args, "--interpolation", "cubic"])
    assert bad.exit_code == 2 and "--interpolation" in bad.stderr and "bilinear" in bad.stderr
    assert "Traceback" not in bad.output


def test_bench_loader_without_albumentations_is_one_line_exit_2(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "albumentations", None)  # `import albumentations` raises ImportError
    args = ["bench", "loader", "--data", str(data_dir), "--batches", "1", "--mode", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "albumentations" in result.stderr and "--no-albumentations" in result.stderr
    assert "Traceback" not in result.output


def test_distributed_ranks_get_disjoint_train_and_complete_eval_shares(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    train_rows, test_rows = [], []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        loaders = _loaders(data_dir, distributed=True, aug=AugConfig(enabled=False), batch_size=4)
        assert loaders.train is not None and loaders.test is not None
        loaders.set_epoch(2)
        train_rows.append(set(np.concatenate([_row_of(b[0]) for b in loaders.train]).tolist()))
        test_rows.append(np.concatenate([_row_of(b[0]) for b in loaders.test]).tolist())
    assert not train_rows[0] & train_rows[1]
    assert abs(len(train_rows[0]) - len(train_rows[1])) <= 4  # equal shares, ragged batch dropped
    all_test = test_rows[0] + test_rows[1]
    assert len(all_test) == len(set(all_test)) == loaders.counts["test"]  # no padding duplicates


MISLABELLED = {5: "Covid19", 22: "no finding", 41: "Effusion|mass"}


@pytest.fixture(scope="module")
def mislabelled_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = _rows(60)
    for k, text in MISLABELLED.items():
        rows[k] = ShardRow(filename=rows[k].filename, labels=text, image=rows[k].image)
    return _write(tmp_path_factory.mktemp("mislabelled"), rows)


def test_rows_with_bad_labels_are_skipped_counted_and_do_not_shift_labels(
    mislabelled_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loaders = _loaders(mislabelled_dir, aug=AugConfig(enabled=False), split_scheme="patient")
    assert sum(loaders.counts.values()) == 60 - len(MISLABELLED)
    assert loaders.skipped == len(MISLABELLED)
    skipped = frozenset(MISLABELLED)
    seen = sum(_check_alignment(loaders, part, corrupt=skipped) for part in ("val", "test"))
    assert seen == loaders.counts["val"] + loaders.counts["test"]
    _check_alignment(loaders, "train", corrupt=skipped)
    assert "data-00000-of-00002.parquet row 5" in caplog.text and "'Covid19'" in caplog.text


def test_bad_label_with_strict_fails_before_any_batch(mislabelled_dir: Path) -> None:
    with pytest.raises(BadInputError) as err:
        _loaders(mislabelled_dir, strict=True)
    assert "data-00000-of-00002.parquet row 5" in err.value.message and "'Covid19'" in err.value.message
