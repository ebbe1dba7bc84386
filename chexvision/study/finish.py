"""Finish a completed study run: fetch it, evaluate it on the study's split, publish it with its test results.

The order matters: `chexvision fetch` publishes at once, before any evaluation, so its card has no test column;
here evaluation writes the run's metrics.json `test` section first and `publish_run` renders the card from it.
Evaluation calls `chexvision.evaluate.evaluation.evaluate_runs` (the Python API behind `chexvision evaluate`).
Imported only when a run is finished: it is the one part of the study layer that loads torch.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from chexvision import remote
from chexvision.errors import BadInputError, CheXVisionError
from chexvision.study.state import LogicalRun, Phase, StudyState, study_dir
from chexvision.study.target import publish_target

__all__ = ["evaluation_data", "finish_run", "finish_study"]

log = logging.getLogger(__name__)


def evaluation_data(state: StudyState) -> Path:
    """The local data folder the study's runs are evaluated on: `[evaluation] data`, else made from the data
    source (synthetic: the same images, generated here from the same seed; hf: the pinned shards, downloaded once
    into the study folder; a folder: itself)."""
    spec = state.spec
    if spec.evaluation.data:
        return Path(spec.evaluation.data).expanduser()
    data = remote.parse_data_source(spec.data, spec.backend.name)
    folder = study_dir(remote.home(), spec.name) / "data"
    if data["kind"] == "synthetic":
        from chexvision.data.synthetic import write_synthetic

        write_synthetic(folder, data["images"], data["size"], data["seed"], workers=max(1, (os.cpu_count() or 2) - 1))
        return folder
    if data["kind"] == "hf":
        from chexvision.data.download import download_dataset

        return Path(download_dataset(folder, data["repo_id"], data["revision"]))
    if data["kind"] == "dir":
        return Path(data["path"])
    raise BadInputError(
        f"{spec.source}: runs trained on {spec.data} cannot be evaluated here",
        "set [evaluation] data to a local folder holding the same data set",
    )


def _eval_options(state: StudyState, data_dir: Path) -> Any:
    from chexvision.device import resolve_device
    from chexvision.evaluate.evaluation import EvalOptions

    ev = state.spec.evaluation
    return EvalOptions(
        data_dir=data_dir, split=ev.split, tta=ev.tta, bootstrap=ev.bootstrap, seed=ev.seed,
        device=resolve_device(ev.device).type, cam_samples=ev.cam_samples, reference=ev.reference,
        subgroups=ev.subgroups,
    )  # fmt: skip


def _test_section(run_dir: Path, split: str) -> dict[str, Any]:
    from chexvision.evaluate.evaluation import metrics_section_name
    from chexvision.rundir import METRICS_JSON

    doc = json.loads((run_dir / METRICS_JSON).read_text(encoding="utf-8"))
    section = doc.get(metrics_section_name(split))
    return section if isinstance(section, dict) else {}


def finish_run(state: StudyState, run: LogicalRun) -> None:
    """FINISHING -> DONE (or FAILED with the reason; a backend that cannot be reached is tried again next pass)."""
    from chexvision.hub import publish_run
    from dispatch.errors import BackendUnavailableError, DispatchError

    assert run.run_id is not None
    try:
        fetched = remote.fetch_run(run.run_id)
        run.run_dir = str(fetched.run_dir)
        from chexvision.evaluate.evaluation import evaluate_runs

        out = study_dir(remote.home(), state.name) / "eval" / run.key
        evaluate_runs([fetched.run_dir], _eval_options(state, evaluation_data(state)), out)
        test = _test_section(fetched.run_dir, state.spec.evaluation.split)
        value = test.get("macro_auc")
        run.test_macro_auc = float(value) if isinstance(value, int | float) else None
        if state.spec.publishing.enabled:
            hub_dir = publish_target(state)
            result = publish_run(
                fetched.run_dir, repo_id=state.spec.repo_for(run.model), hub_dir=hub_dir,
                private=not state.spec.publishing.public,
            )  # fmt: skip
            remote.record_publication(
                run.run_id, repo=result.repo_id, revision=result.tag, commit=result.commit, tag=result.tag
            )
            run.published = {"repo_id": result.repo_id, "tag": result.tag, "url": result.url, "commit": result.commit}
        run.phase, run.error = Phase.DONE, None
    except BackendUnavailableError as exc:
        run.waiting = f"fetch/publish: {exc.message} (tried again on the next pass)"
    except (CheXVisionError, DispatchError) as exc:
        run.phase, run.error = Phase.FAILED, f"finishing {run.run_id}: {exc.one_line()}"


def finish_study(state: StudyState) -> None:
    """The head-to-head report (HTML, Markdown, summary JSON), published beside the models."""
    from chexvision.study.report import publish_report, write_study_report

    out = study_dir(remote.home(), state.name) / "report"
    state.report = {k: str(v) for k, v in write_study_report(state, out).items()}
    if state.spec.publishing.enabled:
        state.published_report = publish_report(state, out)
