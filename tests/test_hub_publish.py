"""Publishing: one commit then a tag, idempotent, earlier runs reachable by tag; the folder layout; errors.

The Hub is faked at the `HfApi` boundary (`FakeHfApi` below, an in-memory git-like store); all our code above it
is real. The folder target (`--hub-dir`) is exercised through the CLI.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from chexvision import hf as client_mod
from chexvision.cli.main import app
from chexvision.errors import BackendError
from chexvision.hf import HubClient
from chexvision.hub.publish import PUBLISHED_FILES, publish_run
from chexvision.hub.resolve import load_model

RUN1, RUN2 = "densenet-20261126-0912-3fa1", "densenet-20261127-1000-beef"
FILES = {"README.md", "config.json", "history.json", "metrics.json", "model.safetensors", "run.json",
         "training_curves.png"}  # fmt: skip


class FakeHfApi:
    """The subset of `HfApi` our adapter calls, over an in-memory store of repos, commits and refs."""

    def __init__(self, user: str = "alice") -> None:
        self.user = user
        self.repos: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.fail: dict[str, BaseException] = {}  # method name -> exception to raise once

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise self.fail.pop(name)

    def _resolve(self, repo: dict[str, Any], revision: str | None) -> str:
        revision = revision or "main"
        return repo["branches"].get(revision) or repo["tags"].get(revision) or revision

    def whoami(self) -> dict[str, Any]:
        self._call("whoami")
        return {"name": self.user}

    def create_repo(self, repo_id: str, *, repo_type: str, private: bool, exist_ok: bool) -> str:
        self._call("create_repo")
        assert exist_ok and repo_type == "model"
        if repo_id not in self.repos:  # the Hub makes an initial commit with .gitattributes
            first = {".gitattributes": b"*.safetensors filter=lfs\n"}
            self.repos[repo_id] = {"private": private, "commits": {"c0": first}, "branches": {"main": "c0"},
                                   "tags": {}}  # fmt: skip
        return f"https://huggingface.co/{repo_id}"

    def list_repo_refs(self, repo_id: str, *, repo_type: str) -> Any:
        self._call("list_repo_refs")
        repo = self.repos[repo_id]
        refs = lambda d: [SimpleNamespace(name=k, target_commit=v) for k, v in d.items()]  # noqa: E731
        return SimpleNamespace(branches=refs(repo["branches"]), tags=refs(repo["tags"]))

    def list_repo_tree(self, repo_id: str, *, revision: str, recursive: bool) -> list[Any]:
        self._call("list_repo_tree")
        repo = self.repos[repo_id]
        out = []
        for path, data in repo["commits"][self._resolve(repo, revision)].items():
            binary = path.endswith((".safetensors", ".png"))
            pointer = f"oid sha256:{hashlib.sha256(data).hexdigest()}".encode()
            blob = hashlib.sha1(b"blob %d\0" % len(pointer if binary else data) + (pointer if binary else data))
            lfs = SimpleNamespace(sha256=hashlib.sha256(data).hexdigest()) if binary else None
            out.append(SimpleNamespace(path=path, blob_id=blob.hexdigest(), lfs=lfs))
        return out

    def create_commit(self, repo_id: str, operations: list[Any], **kwargs: Any) -> Any:
        self._call("create_commit")
        repo = self.repos[repo_id]
        files = dict(repo["commits"][repo["branches"]["main"]])
        for op in operations:
            if hasattr(op, "path_or_fileobj"):
                files[op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()
            else:
                files.pop(op.path_in_repo)
        oid = f"c{len(repo['commits'])}"
        repo["commits"][oid] = files
        repo["branches"]["main"] = oid
        return SimpleNamespace(oid=oid)

    def create_tag(self, repo_id: str, *, tag: str, tag_message: str, revision: str, repo_type: str) -> None:
        self._call("create_tag")
        self.repos[repo_id]["tags"][tag] = revision

    def delete_tag(self, repo_id: str, *, tag: str, repo_type: str) -> None:
        self._call("delete_tag")
        del self.repos[repo_id]["tags"][tag]

    def snapshot_download(
        self, repo_id: str, *, repo_type: str, revision: str | None, allow_patterns: list[str]
    ) -> str:
        self._call("snapshot_download")
        repo = self.repos[repo_id]
        folder = Path(tempfile.mkdtemp(prefix="fake-snapshot-"))
        for path, data in repo["commits"][self._resolve(repo, revision)].items():
            if path in allow_patterns:
                (folder / path).write_bytes(data)
        return str(folder)

    def file(self, repo_id: str, revision: str, path: str) -> bytes:
        repo = self.repos[repo_id]
        return bytes(repo["commits"][self._resolve(repo, revision)][path])


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeHfApi:
    api = FakeHfApi()
    monkeypatch.setattr(client_mod, "_new_hf_api", lambda **kw: api)  # the one place HfApi is constructed
    return api


def test_publish_is_one_commit_then_a_tag_and_idempotent(
    tmp_path: Path, fake: FakeHfApi, make_run_dir: Callable[..., Path]
) -> None:
    run_dir = make_run_dir(tmp_path / "run1", run_id=RUN1)
    first = publish_run(run_dir)
    assert (first.repo_id, first.tag, first.changed) == ("alice/chexvision-densenet", RUN1, True)
    assert fake.calls.count("create_commit") == 1 and fake.calls.count("create_tag") == 1
    repo = fake.repos["alice/chexvision-densenet"]
    assert repo["private"] is True
    assert repo["tags"] == {RUN1: first.commit} and repo["branches"]["main"] == first.commit
    assert set(repo["commits"][first.commit]) == FILES | {".gitattributes"}
    card: Any = ModelCard(fake.file(first.repo_id, RUN1, "README.md").decode())
    assert (
        card.data.eval_results[0].metric_value == json.loads((run_dir / "metrics.json").read_text())["val"]["macro_auc"]
    )

    fake.calls.clear()
    again = publish_run(run_dir)
    assert again.changed is False and again.commit == first.commit
    assert not {"create_commit", "create_tag", "delete_tag"} & set(fake.calls)


def test_another_run_keeps_the_earlier_one_reachable_by_its_tag(
    tmp_path: Path, fake: FakeHfApi, make_run_dir: Callable[..., Path]
) -> None:
    one = publish_run(make_run_dir(tmp_path / "run1", run_id=RUN1, seed=1), repo_id="alice/cxr")
    two = publish_run(make_run_dir(tmp_path / "run2", run_id=RUN2, seed=2), repo_id="alice/cxr")
    assert two.changed and two.commit != one.commit
    assert fake.repos["alice/cxr"]["tags"] == {RUN1: one.commit, RUN2: two.commit}
    assert fake.file("alice/cxr", "main", "model.safetensors") == (tmp_path / "run2/model.safetensors").read_bytes()
    assert fake.file("alice/cxr", RUN1, "model.safetensors") == (tmp_path / "run1/model.safetensors").read_bytes()
    # and loading by tag gives the first run's weights
    model, config = load_model(f"alice/cxr@{RUN1}", client=HubClient(api=fake))
    state = {k: v for k, v in model.state_dict().items()}
    from safetensors.torch import load_file

    ref = load_file(str(tmp_path / "run1/model.safetensors"))
    assert all((state[k] == ref[k]).all() for k in ref)
    assert config["model"]["name"] == "densenet"


def test_a_failure_between_commit_and_tag_converges_on_rerun(
    tmp_path: Path, fake: FakeHfApi, make_run_dir: Callable[..., Path]
) -> None:
    run_dir = make_run_dir(tmp_path / "run1", run_id=RUN1)
    fake.fail["create_tag"] = ConnectionError("connection reset")
    with pytest.raises(BackendError) as failed:
        publish_run(run_dir)
    assert "--hub-dir" in failed.value.one_line()
    result = publish_run(run_dir)
    assert result.changed and fake.calls.count("create_commit") == 1  # the files were not committed twice
    assert fake.repos[result.repo_id]["tags"][RUN1] == result.commit


def test_republish_after_evaluation_commits_and_moves_the_tag(
    tmp_path: Path, fake: FakeHfApi, make_run_dir: Callable[..., Path]
) -> None:
    first = publish_run(make_run_dir(tmp_path / "run", run_id=RUN1))
    second = publish_run(make_run_dir(tmp_path / "run", run_id=RUN1, test_metrics=True))
    assert second.changed and second.commit != first.commit
    assert fake.repos[second.repo_id]["tags"][RUN1] == second.commit
    card: Any = ModelCard(fake.file(second.repo_id, RUN1, "README.md").decode())
    assert {r.dataset_split for r in card.data.eval_results} == {"validation", "test"}


def test_evaluation_re_records_metrics_and_a_changed_file_is_never_published(
    tmp_path: Path, make_run_dir: Callable[..., Path]
) -> None:
    from chexvision.rundir import METRICS_JSON, RUN_JSON, WEIGHTS, FilesChangedError, RunDir

    hub = tmp_path / "hub"
    run = make_run_dir(tmp_path / "run", run_id=RUN1)
    RunDir(run).write_metrics_section("test", {"macro_auc": 0.7})  # what `chexvision evaluate` writes
    published = publish_run(run, hub_dir=hub, repo_id="cxr")
    recorded = json.loads((hub / "cxr" / RUN_JSON).read_text())["files"]
    assert recorded[METRICS_JSON] == hashlib.sha256((hub / "cxr" / METRICS_JSON).read_bytes()).hexdigest()
    weights = run / WEIGHTS
    data = weights.read_bytes()
    weights.unlink()  # a new file: the published snapshot's hard link keeps the original
    weights.write_bytes(data[:-1000] + bytes(b ^ 0xFF for b in data[-1000:]))
    with pytest.raises(FilesChangedError, match=WEIGHTS):
        publish_run(run, hub_dir=hub, repo_id="cxr", tag="again")
    assert json.loads((hub / "cxr" / ".revisions" / "refs.json").read_text())["tags"] == {RUN1: published.commit}


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_hub_dir_layout_idempotence_and_tags(tmp_path: Path, make_run_dir: Callable[..., Path]) -> None:
    hub = tmp_path / "hub"
    run1 = make_run_dir(tmp_path / "run1", run_id=RUN1, seed=1)
    res = _cli("publish", str(run1), "--hub-dir", str(hub), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    head = hub / "chexvision-densenet"
    assert out["changed"] is True and out["tag"] == RUN1 and set(out["files"]) == set(PUBLISHED_FILES)
    assert {p.name for p in head.iterdir() if not p.name.startswith(".")} == FILES
    assert {p.name for p in (head / ".revisions" / RUN1).iterdir()} == FILES
    refs = json.loads((head / ".revisions" / "refs.json").read_text())
    assert refs == {"branches": {"main": out["commit"]}, "tags": {RUN1: out["commit"]}}
    card = ModelCard.load(head / "README.md")
    metrics = json.loads((run1 / "metrics.json").read_text())
    assert {r.metric_name: r.metric_value for r in card.data.eval_results} == {
        "Macro AUC (14 findings)": metrics["val"]["macro_auc"],
        "Binary AUC (any finding vs No Finding)": metrics["val"]["binary_auc"],
        "Binary F1 (any finding vs No Finding)": metrics["val"]["binary_f1"],
    }

    again = _cli("publish", str(run1), "--hub-dir", str(hub))
    assert again.exit_code == 0 and "unchanged" in again.stdout

    run2 = make_run_dir(tmp_path / "run2", run_id=RUN2, seed=2)
    assert _cli("publish", str(run2), "--hub-dir", str(hub), "--revision-tag", "v2").exit_code == 0
    refs = json.loads((head / ".revisions" / "refs.json").read_text())
    assert set(refs["tags"]) == {RUN1, "v2"} and refs["tags"]["v2"] == refs["branches"]["main"]
    assert (head / "model.safetensors").read_bytes() == (run2 / "model.safetensors").read_bytes()
    assert (head / ".revisions" / RUN1 / "model.safetensors").read_bytes() == (run1 / "model.safetensors").read_bytes()
    # FOLDER@TAG loads the earlier run
    model, _ = load_model(f"{head}@{RUN1}")
    assert model is not None


def test_without_token_or_offline_the_error_names_hub_dir_and_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_run_dir: Callable[..., Path]
) -> None:
    run_dir = make_run_dir(tmp_path / "run", run_id=RUN1)
    res = _cli("publish", str(run_dir))  # conftest sets HF_HUB_OFFLINE=1
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and "--hub-dir" in res.stderr and len(res.stderr.splitlines()) == 1

    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    res = _cli("publish", str(run_dir))
    assert res.exit_code == 2
    assert "HF_TOKEN" in res.stderr and "login" in res.stderr and "--hub-dir" in res.stderr


def test_backend_failure_is_exit_3_and_never_shows_the_token(
    tmp_path: Path, fake: FakeHfApi, monkeypatch: pytest.MonkeyPatch, make_run_dir: Callable[..., Path]
) -> None:
    secret = "hf_SECRETtoken1234567890"
    monkeypatch.setenv("HF_TOKEN", secret)
    fake.fail["create_repo"] = ConnectionError(f"boom with Authorization: Bearer {secret}")
    res = _cli("publish", str(make_run_dir(tmp_path / "run", run_id=RUN1)), "--repo", "alice/cxr")
    assert res.exit_code == 3
    assert "--hub-dir" in res.stderr and secret not in res.output and secret not in res.stderr


def test_hub_ready_is_false_offline() -> None:
    from chexvision.hf import hub_ready

    assert hub_ready() is False  # conftest sets HF_HUB_OFFLINE=1 and removes HF_TOKEN
