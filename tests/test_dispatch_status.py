"""The run status enum and the table from Kaggle's KernelWorkerStatus."""

from __future__ import annotations

import pytest
from kagglesdk.kernels.types.kernels_enums import KernelWorkerStatus

from dispatch.status import KAGGLE_STATUS_MAP, RunStatus, from_kaggle


def test_declaration_order_is_the_lifecycle() -> None:
    assert RunStatus.QUEUED < RunStatus.RUNNING < RunStatus.COMPLETE < RunStatus.CANCELLED
    assert sorted([RunStatus.ERROR, RunStatus.QUEUED, RunStatus.RUNNING]) == [
        RunStatus.QUEUED,
        RunStatus.RUNNING,
        RunStatus.ERROR,
    ]
    assert RunStatus("running") == "running" and isinstance(RunStatus.RUNNING, str)


def test_terminal_states() -> None:
    assert {s for s in RunStatus if s.is_terminal()} == {RunStatus.COMPLETE, RunStatus.ERROR, RunStatus.CANCELLED}


@pytest.mark.parametrize("member", list(KernelWorkerStatus), ids=lambda m: m.name)
def test_every_kaggle_status_has_a_mapping(member: KernelWorkerStatus) -> None:
    assert from_kaggle(member) is KAGGLE_STATUS_MAP[member.name]
    assert from_kaggle(str(member)) is KAGGLE_STATUS_MAP[member.name]  # 'KernelWorkerStatus.X' too


def test_map_has_no_stale_names() -> None:
    assert set(KAGGLE_STATUS_MAP) == {m.name for m in KernelWorkerStatus}


def test_specific_translations() -> None:
    assert from_kaggle(KernelWorkerStatus.CANCEL_ACKNOWLEDGED) is RunStatus.CANCELLED
    assert from_kaggle(KernelWorkerStatus.ERROR) is RunStatus.ERROR
    with pytest.raises(ValueError, match="unknown Kaggle kernel status"):
        from_kaggle("EXPLODED")
