"""The source bundle: deterministic, only what the kernel needs, and never a secret."""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chexvision import remote as runs
from chexvision.cli.main import app
from chexvision.remote import job_sources as sources
from chexvision.remote import repo_root
from dispatch.bundle import build_bundle, bundle_files
from dispatch.errors import InvalidJobError, SecretFoundError
from dispatch.job import Sources


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the real chexvision package (so secrets can be planted without touching the repo)."""
    root = tmp_path / "tree"
    shutil.copytree(
        repo_root() / "chexvision",
        root / "chexvision",
        ignore=shutil.ignore_patterns("__pycache__", "Data_Entry*", "BBox*", "*train_val*"),
    )
    return root


def test_same_tree_same_sha(tree: Path) -> None:
    first = build_bundle(sources(tree))
    for path in tree.rglob("*.py"):
        os.utime(path, (1_000_000_000, 1_000_000_000))  # timestamps must not matter
    second = build_bundle(sources(tree))
    assert first.sha256 == second.sha256 and first.data == second.data
    assert list(first.files) == sorted(first.files)


def test_real_bundle_holds_only_what_the_kernel_needs() -> None:
    bundle = build_bundle(sources(repo_root()))
    names = set(zipfile.ZipFile(io.BytesIO(bundle.data)).namelist())
    assert "chexvision/__main__.py" in names and "chexvision/cli/main.py" in names
    assert "chexvision/data/resources/official_test.txt.gz" in names
    resources = {n for n in names if n.startswith("chexvision/data/resources/")}
    assert resources == {
        "chexvision/data/resources/official_test.txt.gz",
        "chexvision/data/resources/nih_synth_stats.json.gz",  # `data synth` in the kernel; never the 1 MB CSV
    }
    assert not any(part in n for n in names for part in ("__pycache__", ".pyc", "tests/", ".git/", ".env"))
    assert not any(n.startswith(("dispatch/", "kernels/", "tests/")) for n in names)
    assert bundle.size < 700_000  # base64 adds a third: must stay well under Kaggle's 1 MB


def test_chexnet_lists_only_for_the_chexnet_scheme() -> None:
    names = bundle_files(sources(repo_root(), split_scheme="chexnet"))
    assert "chexvision/data/resources/chexnet_train.txt.gz" in names
    assert "chexvision/data/resources/Data_Entry_2017_v2020.csv.gz" not in names
    assert "chexvision/data/resources/official_train_val.txt.gz" not in names
    assert "chexvision/data/resources/BBox_List_2017.csv.gz" not in names


def test_caches_and_binaries_excluded(tree: Path) -> None:
    (tree / "chexvision" / "__pycache__").mkdir(exist_ok=True)
    (tree / "chexvision" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (tree / "chexvision" / "weights.safetensors").write_bytes(b"\0")
    names = bundle_files(sources(tree))
    assert not any("__pycache__" in n or n.endswith(".safetensors") for n in names)


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [
        ("kaggle.json", '{"username": "a", "key": "b"}', "Kaggle API credentials"),
        (".env", "X=1", "a dotenv file"),
        ("settings.py", "TOKEN = 'hf_" + "a" * 34 + "'", "a Hugging Face token"),
        ("key.txt", "-----BEGIN RSA " + "PRIVATE KEY-----\nabc", "a private key"),
        ("conf.py", 'cfg = {"key": "' + "0123456789abcdef" * 2 + '"}', "a Kaggle API key"),
        ("cloud.py", "ID = 'AKIA" + "ABCDEFGHIJKLMNOP" + "'", "an AWS access key id"),
        ("aws.toml", "aws_secret_access_key = " + "a1B2/c3D4+" * 4, "an AWS secret access key"),
        ("sa.txt", '{"type": "service_account", "project_id": "p"}', "a Google Cloud service-account key"),
        ("credentials", "[default]", "cloud credentials (~/.aws/credentials)"),
    ],
)
def test_secret_refused_naming_the_file(tree: Path, name: str, content: str, what: str) -> None:
    (tree / "chexvision" / "data" / name).write_text(content)
    with pytest.raises(SecretFoundError) as info:
        build_bundle(sources(tree))
    assert info.value.path == f"chexvision/data/{name}" and info.value.what == what


def test_secret_refusal_exits_2_from_the_cli(tree: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tree / "chexvision" / "kaggle.json").write_text("{}")
    monkeypatch.setattr(runs, "repo_root", lambda: tree)
    out = CliRunner().invoke(
        app,
        ["dispatch", "train", "--model", "densenet", "--backend", "local", "--dry-run", "--out", str(tmp_path / "k")],
    )
    assert out.exit_code == 2
    assert "refusing to bundle chexvision/kaggle.json" in out.stderr


def test_only_the_named_folders_go_in(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "data").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1")
    (tmp_path / "pkg" / "data" / "keep.txt").write_text("k")
    (tmp_path / "pkg" / "data" / "drop.txt").write_text("d")
    (tmp_path / "other.py").write_text("y = 2")
    names = bundle_files(Sources(root=tmp_path, include=("pkg",), only={"pkg/data": ("keep.txt",)}))
    assert names == ["pkg/a.py", "pkg/data/keep.txt"]
    with pytest.raises(InvalidJobError, match="no missing/ folder"):
        bundle_files(Sources(root=tmp_path, include=("missing",)))


def test_a_secret_in_a_command_line_is_refused(tmp_path: Path) -> None:
    from dispatch.bundle import check_job_secrets
    from dispatch.job import JobSpec, Step

    job = JobSpec("r", "x", Sources(tmp_path, ()), (Step("s", ("run", "--token", "hf_" + "b" * 34)),))
    with pytest.raises(SecretFoundError, match="Hugging Face token"):
        check_job_secrets(job)


# --- issue 10, defect 1: every byte of every file is scanned, compressed ones decompressed, none skipped by size

HF_TOKEN = "hf_" + "Zq7Xw2Lm9Pv4Rt6Yb8Nc1Kd3Fg5Hj0Ls2Ua"  # the shape of a real one: hf_ + 34 letters and digits
KAGGLE_KEY = "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e"  # 32 hex digits


def _gzip(text: str) -> bytes:
    import gzip

    return gzip.compress(text.encode(), mtime=0)


def _zip(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def _big(secret: str) -> bytes:
    """Over 2 MB with the secret near the end (it used to be skipped unscanned)."""
    return b"x = 1\n" * 400_000 + f"token = '{secret}'\n".encode()


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [
        ("keys.py", f'kaggle_key = "{KAGGLE_KEY}"\n'.encode(), "a Kaggle API key"),
        ("cfg.toml", f"KAGGLE_KEY={KAGGLE_KEY}\n".encode(), "a Kaggle API key"),
        ("big_table.py", _big(HF_TOKEN), "a Hugging Face token"),
        ("stats.json.gz", _gzip(f'{{"note": "{HF_TOKEN}"}}'), "a Hugging Face token"),
        ("renamed.bin", _gzip(f"token={HF_TOKEN}"), "a Hugging Face token"),  # told by magic bytes, not the name
        ("bundle.zip", _zip("inner/conf.py", _gzip(f"k = '{HF_TOKEN}'")), "a Hugging Face token"),  # nested
        ("data.txt.bz2", __import__("bz2").compress(f"kaggle_key: '{KAGGLE_KEY}'".encode()), "a Kaggle API key"),
        ("data.txt.xz", __import__("lzma").compress(HF_TOKEN.encode()), "a Hugging Face token"),
    ],
)
def test_every_byte_is_scanned(tree: Path, name: str, content: bytes, what: str) -> None:
    (tree / "chexvision" / "data" / name).write_bytes(content)
    with pytest.raises(SecretFoundError) as info:
        build_bundle(sources(tree))
    assert info.value.path == f"chexvision/data/{name}" and info.value.what == what
    for secret in (HF_TOKEN, KAGGLE_KEY):
        assert secret not in info.value.one_line()


def test_a_token_across_a_chunk_boundary_is_found(tmp_path: Path) -> None:
    from dispatch.secrets import _CHUNK, find_secret

    path = tmp_path / "edge.py"
    path.write_bytes(b"#" * (_CHUNK - 10) + HF_TOKEN.encode() + b"\n")  # starts 10 bytes before the boundary
    assert find_secret(path) == "a Hugging Face token"


def test_a_compressed_file_that_cannot_be_read_is_refused(tree: Path) -> None:
    from dispatch.errors import UnscannableFileError

    (tree / "chexvision" / "data" / "broken.gz").write_bytes(_gzip("plain text " * 100)[:40])
    with pytest.raises(UnscannableFileError, match=r"chexvision/data/broken\.gz.*gzip"):
        build_bundle(sources(tree))


def test_only_source_templates_presets_and_named_data_ship(tree: Path) -> None:
    (tree / "chexvision" / "data" / "notes.txt").write_text("scratch notes")
    (tree / "chexvision" / "data" / "dump.csv").write_text("a,b\n1,2\n")
    names = bundle_files(sources(tree))
    assert "chexvision/data/notes.txt" not in names and "chexvision/data/dump.csv" not in names
    assert "chexvision/presets/smoke.toml" in names and "chexvision/hub/templates/modelcard.md.j2" in names
    assert {n.rsplit(".", 1)[-1] for n in names} <= {"py", "j2", "toml", "gz"}


def test_the_real_resources_are_scanned_decompressed_and_pass() -> None:
    """The shipped package data is gzip: it goes through the decompressing scan (and holds no secret)."""
    from dispatch.secrets import find_secret

    for name in ("official_test.txt.gz", "nih_synth_stats.json.gz"):
        assert find_secret(repo_root() / "chexvision" / "data" / "resources" / name) is None
