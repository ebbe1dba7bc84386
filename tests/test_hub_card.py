"""Model card: YAML metadata parsed back by huggingface_hub, Markdown that renders, a training-curves PNG.

`make_run_dir` (a tiny real model + the run-dir JSON files of DESIGN §4) is shared with test_hub_publish.py and
test_predict.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import ModelCard

from chexvision.errors import BadInputError
from chexvision.hub.card import plot_training_curves, read_run, render_card
from chexvision.labels import LABELS

DATASET = {
    "source": "hf",
    "repo_id": "arudaev/chest-xray-14-320",
    "revision": "44443e6ee968b3c6094b63f14a27698c40b50680",
    "split_scheme": "official",
    "counts": {"train": 70, "val": 10, "test": 20},
}


def _split_metrics(base: float, *, evaluated: bool = False) -> dict[str, Any]:
    """A metrics.json section: training's "val" shape, or with `evaluated` the test section's extra keys."""
    per_class: dict[str, float | None] = {label: round(base + i / 100, 4) for i, label in enumerate(LABELS)}
    per_class["Hernia"] = None  # no positive case in a small split
    block: dict[str, Any] = {"macro_auc": base, "binary_auc": base + 0.05, "binary_f1": base - 0.1,
                             "per_class_auc": per_class}  # fmt: skip
    if evaluated:
        block.update({"macro_auprc": base - 0.3, "binary_f1_youden": base - 0.05, "ece_binary": 0.04})
    return block


def make_run_dir(
    path: Path,
    *,
    run_id: str = "densenet-20261126-0912-3fa1",
    model: str = "densenet",
    seed: int = 0,
    pretrained: bool = False,
    test_metrics: bool = False,
    split_scheme: str = "official",
) -> Path:
    """A run directory as training writes it, around a tiny randomly initialised model."""
    import torch
    from safetensors.torch import save_file

    from chexvision.models import create_model, tiny_kwargs

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = create_model(model, **tiny_kwargs(model))
    with torch.no_grad():  # a non-trivial binary head so outputs depend on the input
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path / "model.safetensors"))
    config = {
        "model": {**net.model_cfg, "pretrained": pretrained, "weights": None},
        "data": {"size": 64, "mean": 0.449, "std": 0.226, "split_scheme": split_scheme, "clahe": False},
        "optim": {"lr": 0.001, "weight_decay": 0.01, "betas": [0.9, 0.999]},
        "schedule": {"epochs": 3, "patience": 15},
        "seed": seed,
        "preset": "smoke",
    }
    epochs = [
        {
            "epoch": e, "phase": 2, "lr": 1e-3, "train_loss": 1.0 / e, "val_loss": 1.1 / e,
            "val_macro_auc": 0.6 + e / 20, "val_binary_auc": 0.65 + e / 20, "val_binary_f1": 0.5 + e / 30,
            "val_per_class_auc": {label: 0.7 for label in LABELS}, "seconds": 1.5, "images_per_second": 100.0,
        }
        for e in (1, 2, 3)
    ]  # fmt: skip
    metrics: dict[str, Any] = {"split_scheme": split_scheme, "val": {**_split_metrics(0.75), "epoch": 3}}
    if test_metrics:
        metrics["test"] = _split_metrics(0.72, evaluated=True)
    run = {
        "run_id": run_id, "model": model, "preset": "smoke", "status": "complete",
        "started_at": "2026-11-26T09:12:00Z", "finished_at": "2026-11-26T09:20:00Z", "git_sha": "abc1234",
        "bundle_sha256": None, "dataset": {**DATASET, "split_scheme": split_scheme},
        "env": {"python": "3.11", "torch": "2.14", "cuda": None, "gpus": []},
    }  # fmt: skip
    history = {"epochs": epochs, "best_epoch": 3, "best_val_macro_auc": 0.75}
    for name, data in (("config", config), ("history", history), ("metrics", metrics), ("run", run)):
        (path / f"{name}.json").write_text(json.dumps(data, indent=2))
    (path / "last.ckpt").write_bytes(b"not published")
    return path


def _results(card: ModelCard) -> dict[tuple[str, str], float]:
    """(split, metric config/type) -> value, from the parsed model-index."""
    out = {}
    for r in card.data.eval_results or []:
        out[(r.dataset_split, f"{r.metric_type}:{r.metric_config}")] = r.metric_value
    return out


def _expected(metrics: dict[str, Any]) -> dict[tuple[str, str], float]:
    out = {}
    for key, split in (("val", "validation"), ("test", "test")):
        if key in metrics:
            m = metrics[key]
            out[(split, "roc_auc:macro")] = m["macro_auc"]
            out[(split, "roc_auc:binary")] = m["binary_auc"]
            out[(split, "f1:binary")] = m["binary_f1"]
            if "binary_f1_youden" in m:
                out[(split, "f1:binary_youden")] = m["binary_f1_youden"]
    return out


@pytest.mark.parametrize("with_test", [False, True])
def test_card_yaml_parses_back_with_eval_results_equal_to_metrics(tmp_path: Path, with_test: bool) -> None:
    run_dir = make_run_dir(tmp_path / "run", test_metrics=with_test)
    text = render_card(read_run(run_dir), repo_id="me/chexvision-densenet", revision="densenet-20261126-0912-3fa1")
    card = ModelCard(text)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert _results(card) == _expected(metrics)
    data = card.data
    assert data.license == "apache-2.0"
    assert data.pipeline_tag == "image-classification"
    assert data.datasets == ["arudaev/chest-xray-14-320"]
    assert data.base_model is None  # trained from scratch
    for r in data.eval_results:
        assert r.dataset_revision == DATASET["revision"]
        assert r.dataset_config == "official" and "official split" in r.dataset_name
        assert r.dataset_args == {"split_scheme": "official"}
    assert "| Hernia | n/a | n/a |" in text  # no positive case; not evaluated on test


def test_pretrained_densenet_names_its_base_model(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run", pretrained=True, split_scheme="chexnet")
    card = ModelCard(render_card(read_run(run_dir), repo_id="me/x", revision="r1"))
    assert card.data.base_model == "timm/densenet121.tv_in1k"
    # the reference table marks only the CheXNet number as comparable with a chexnet-split run
    rows = [line for line in card.text.splitlines() if line.startswith("| ") and "Macro AUC" not in line]
    comparable = [row for row in rows if row.rstrip(" |").endswith("yes, on the test split")]
    assert len(comparable) == 1 and "0.841" in comparable[0]
    assert "LEAKS" in card.text


def test_card_markdown_renders(tmp_path: Path) -> None:
    from markdown_it import MarkdownIt

    run_dir = make_run_dir(tmp_path / "run", test_metrics=True)
    text = render_card(read_run(run_dir), repo_id="me/chexvision-densenet", revision="tag1")
    body = ModelCard(text).text
    html = MarkdownIt("commonmark").enable("table").render(body)
    assert html.count("<table>") == 5  # overview, results, per-class, references, config
    assert '<img src="training_curves.png"' in html
    assert "chexvision predict chest.png --model me/chexvision-densenet@tag1" in body
    assert "Not for clinical use" in body
    assert "None" not in body and "{{" not in body and "{%" not in body
    for label in LABELS:
        assert f"<td>{label}</td>" in html


def test_training_curves_png_is_written_and_deterministic(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run")
    history = json.loads((run_dir / "history.json").read_text())
    a = plot_training_curves(history, tmp_path / "a.png")
    b = plot_training_curves(history, tmp_path / "b.png")
    assert a is not None and b is not None
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert a.read_bytes() == b.read_bytes()  # republishing the same run must not change the repo
    assert plot_training_curves({"epochs": []}, tmp_path / "c.png") is None


def test_incomplete_run_dir_is_a_bad_input_naming_the_file(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run")
    (run_dir / "model.safetensors").unlink()
    with pytest.raises(BadInputError, match=r"model\.safetensors"):
        read_run(run_dir)


def test_card_states_this_runs_preprocessing_dropout_and_data(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run")
    run = json.loads((run_dir / "run.json").read_text())
    run["dataset"]["clahe"] = True  # what training recorded: the images had CLAHE
    (run_dir / "run.json").write_text(json.dumps(run))
    body = ModelCard(render_card(read_run(run_dir), repo_id="me/x", revision="r1")).text
    assert "CLAHE, scale to" in body
    assert "dropout 0.3" in body  # DenseNet's default: the tiny kwargs do not set it

    config = json.loads((run_dir / "config.json").read_text())
    config["model"]["kwargs"]["drop_rate"] = 0.0  # as a smoke run trains
    (run_dir / "config.json").write_text(json.dumps(config))
    body = ModelCard(render_card(read_run(run_dir), repo_id="me/x", revision="r1")).text
    assert "dropout 0.0" in body and "dropout 0.3" not in body
    assert "Label noise" in body and "synthetic" not in body.lower()

    run["dataset"] = {"source": "synthetic", "split_scheme": "patient", "clahe": False}
    (run_dir / "run.json").write_text(json.dumps(run))
    body = ModelCard(render_card(read_run(run_dir), repo_id="me/x", revision="r1")).text
    assert "CLAHE, scale" not in body and "Trained on synthetic images" in body
    assert "Label noise" not in body and "NIH Clinical Center, 1992" not in body


def _section(body: str, title: str) -> str:
    return body.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_card_counts_parameters_not_batchnorm_buffers(tmp_path: Path) -> None:
    from chexvision.models import build_from_config

    run_dir = make_run_dir(tmp_path / "run")
    net = build_from_config(json.loads((run_dir / "config.json").read_text())["model"])
    params = sum(p.numel() for p in net.parameters())
    buffers = sum(b.numel() for b in net.buffers())  # BatchNorm running statistics
    assert buffers > 0
    text = render_card(read_run(run_dir), repo_id="me/x", revision="r1")
    assert f"`densenet`, {params:,} parameters" in text
    assert f"{params + buffers:,}" not in text


def test_only_a_pretrained_run_is_described_as_imagenet_initialised(tmp_path: Path) -> None:
    scratch = ModelCard(render_card(read_run(make_run_dir(tmp_path / "a")), repo_id="me/x", revision="r1")).text
    model = _section(scratch, "Model")
    assert "trained from scratch (no ImageNet initialisation)" in model
    assert "IMAGENET1K_V1" not in model and "conv0" not in model and "densenet121.tv_in1k" not in model

    pretrained = make_run_dir(tmp_path / "b", pretrained=True)
    model = _section(ModelCard(render_card(read_run(pretrained), repo_id="me/x", revision="r1")).text, "Model")
    assert "started from torchvision's ImageNet weights" in model and "IMAGENET1K_V1" in model
    assert "https://huggingface.co/timm/densenet121.tv_in1k" in model and "from scratch" not in model

    # seresnet has no pretrained weights: a config asking for them still trained from scratch
    seresnet = make_run_dir(tmp_path / "c", model="seresnet", pretrained=True)
    card = ModelCard(render_card(read_run(seresnet), repo_id="me/x", revision="r1"))
    assert card.data.base_model is None
    assert "trained from scratch (no ImageNet initialisation)" in _section(card.text, "Model")


def test_results_table_has_one_column_per_f1_threshold(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run", test_metrics=True)
    body = ModelCard(render_card(read_run(run_dir), repo_id="me/x", revision="r1")).text
    results = _section(body, "Results")
    header = next(line for line in results.splitlines() if line.startswith("| Split |"))
    assert "binary F1 @ 0.5" in header and "binary F1 @ Youden" in header
    validation = next(line for line in results.splitlines() if line.startswith("| validation |"))
    test = next(line for line in results.splitlines() if line.startswith("| test |"))
    assert validation.count("n/a") == 1  # F1 at the Youden threshold is measured by evaluation only
    assert "0.6200" in test and "0.6700" in test  # F1 at 0.5 and at the Youden threshold


def test_card_metadata_and_text_say_how_to_load(tmp_path: Path) -> None:
    """Issue 16: `library_name` and the mixin's tags, and the how-to-load text names both ways in."""
    run_dir = make_run_dir(tmp_path / "run")
    card = ModelCard(render_card(read_run(run_dir), repo_id="me/chexvision-densenet", revision="v1"))
    meta = card.data.to_dict()
    assert meta["library_name"] == "chexvision"
    assert {"pytorch_model_hub_mixin", "model_hub_mixin", "pytorch", "chexvision"} <= set(meta["tags"])
    assert 'chexvision.load("me/chexvision-densenet@v1")' in card.text
    assert 'CheXModel.from_pretrained("me/chexvision-densenet", revision="v1")' in card.text
    assert "chexvision export --model me/chexvision-densenet@v1" in card.text
    local = ModelCard(render_card(read_run(run_dir), repo_id="chexvision-densenet", revision="v1"))
    assert 'CheXModel.from_pretrained("./chexvision-densenet")' in local.text


def test_a_published_folder_loads_both_ways(tmp_path: Path) -> None:
    """The `--hub-dir` repo layout (config.json + model.safetensors) loads through the mixin and chexvision.load
    with the same outputs as the run it came from."""
    import torch

    import chexvision
    from chexvision.hub.publish import publish_run
    from chexvision.inference.load import load_model_dir
    from chexvision.models import CheXModel

    run_dir = make_run_dir(tmp_path / "run")
    result = publish_run(run_dir, repo_id="me/chexvision-densenet", hub_dir=tmp_path / "hub", tag="v1")
    head = tmp_path / "hub" / "me" / "chexvision-densenet"
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        want = load_model_dir(run_dir).model(x)
        for got in (CheXModel.from_pretrained(head)(x), chexvision.load(result.model_spec, device="cpu").model(x)):
            torch.testing.assert_close(got.findings, want.findings, rtol=0, atol=0)
            torch.testing.assert_close(got.abnormal, want.abnormal, rtol=0, atol=0)


def _evaluation_keys() -> dict[str, Any]:
    """The keys `chexvision evaluate` adds to metrics.json "test" (issue 11), in the shapes it writes them."""

    def group(images: int, auc: float, rate: float | None) -> dict[str, Any]:
        return {"images": images, "patients": images // 2, "abnormal": images // 2, "macro_auc": auc,
                "macro_auc_ci": [auc - 0.05, auc + 0.04], "underdiagnosis_rate": rate,
                "underdiagnosis_ci": None if rate is None else [rate - 0.1, rate + 0.1]}  # fmt: skip

    gap = {"highest": "F", "lowest": "M", "highest_rate": 0.4, "lowest_rate": 0.25, "difference": 0.15,
           "highest_ci": [0.3, 0.5], "lowest_ci": [0.15, 0.35], "ci_overlap": True}  # fmt: skip
    findings = ("Nodule or mass", "Pneumothorax")
    return {
        "split": {"name": "test", "count": 20, "sha256": "ab12cd34ef56" + "0" * 52, "matches_training": True},
        "fitted_on": "validation",
        "binary_source": "binary head",
        "classes_scored": [label for label in LABELS if label != "Hernia"],
        "classes_not_defined": ["Hernia"],
        "subgroups": {
            "attributes": ["sex", "age"],
            "min_gap_abnormal": 5,
            "sex": {"M": group(12, 0.71, 0.25), "F": group(8, 0.69, 0.4)},
            "age": {"0-17": group(0, 0.0, None), "18-39": group(20, 0.7, 0.3)},
            "largest_gap": {"sex": gap, "age": None},
        },
        "reference": {
            "name": "google2019",
            "images": 80,
            "per_finding_auc": dict(zip(findings, (0.81, 0.9), strict=True)),
            "nih_label_auc": dict(zip(findings, (0.76, 0.88), strict=True)),
            "gap": dict(zip(findings, (0.05, 0.02), strict=True)),
            "ci": {"per_finding_auc": {f: [0.7, 0.95] for f in findings}},
        },
    }


_EVALUATION_TITLES = (
    "### How the test split was evaluated",
    "### Subgroups and underdiagnosis",
    "### Radiologist-adjudicated labels (Google 2019)",
    "Not defined by the evaluated data set",
)


def test_card_shows_what_evaluation_recorded(tmp_path: Path, make_run_dir: Any) -> None:
    """Issue 11: the evaluated split's fingerprint, where thresholds were fitted, the binary score's source,
    subgroups and underdiagnosis, the adjudicated-label AUROCs and the classes not defined, from metrics.json."""
    from markdown_it import MarkdownIt

    from chexvision.rundir import RunDir

    run_dir = make_run_dir(tmp_path / "run", test_metrics=True)
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    RunDir(run_dir).write_metrics_section("test", {**test, **_evaluation_keys()})  # keeps run.json's sha256 valid
    text = render_card(read_run(run_dir), repo_id="me/x", revision="r1")
    (tmp_path / "README.md").write_text(text)
    body = ModelCard(text).text
    results = _section(body, "Results")
    for title in _EVALUATION_TITLES:
        assert title in results
    assert "- Evaluated split: `test`, 20 images, sha256 `ab12cd34ef56...`: the split training held out." in body
    assert "fitted on validation." in body and "Binary (abnormal) score: binary head." in body
    assert "| Sex: M | 12 | 0.710 [0.660, 0.750] | 0.250 [0.150, 0.350] |" in body
    assert "| Age band: 18-39 | 20 |" in body and "0-17" not in body  # a subgroup without images is left out
    assert "Sex: highest underdiagnosis F 0.400 [0.300, 0.500], lowest M 0.250 [0.150, 0.350]; gap 0.150." in body
    assert "Age band: fewer than two subgroups with at least 5 abnormal images" in body
    assert "| Nodule or mass | 80 | 0.810 [0.700, 0.950] | 0.760 | +0.050 |" in body
    assert "data set (not labelled, so not scored and not in the test macro):\nHernia." in body
    assert "None" not in body and "{{" not in body
    html = MarkdownIt("commonmark").enable("table").render(body)
    assert html.count("<table>") == 7  # the five of every card, subgroups, adjudicated labels

    keys = _evaluation_keys()
    for matches, verdict in ((False, "NOT the split training held out"), (None, "training recorded no fingerprint")):
        RunDir(run_dir).write_metrics_section("test", {**test, "split": {**keys["split"], "matches_training": matches}})
        body = ModelCard(render_card(read_run(run_dir), repo_id="me/x", revision="r1")).text
        assert f"- Evaluated split: `test`, 20 images, sha256 `ab12cd34ef56...`: {verdict}" in body
        assert "### Subgroups and underdiagnosis" not in body and "fitted on" not in body  # only what is recorded


def test_card_of_a_run_evaluated_without_those_keys_shows_none_of_them(tmp_path: Path, make_run_dir: Any) -> None:
    for with_test in (False, True):
        run_dir = make_run_dir(tmp_path / f"run-{with_test}", test_metrics=with_test)
        body = ModelCard(render_card(read_run(run_dir), repo_id="me/x", revision="r1")).text
        for title in _EVALUATION_TITLES:
            assert title not in body
        assert "underdiagnosis" not in body.lower() and "google2019" not in body and "sha256 `" not in body
