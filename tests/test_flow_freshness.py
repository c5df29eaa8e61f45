"""Prefect smoke test: the scheduled freshness flow runs its check as a task and names
the stale datasets in its final message."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.states import State

from civicflow import published
from civicflow.settings import load_settings
from tests.test_freshness import NEWEST, make_spec


def test_the_freshness_flow_names_stale_datasets(
    prefect_harness: object, project: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import pandas as pd

    from flows.freshness import freshness

    settings = load_settings()
    # a daily dataset whose newest record (NEWEST, in 2026-11) is long past its allowance
    spec = make_spec("daily")
    (settings.datasets_dir / "cases.yaml").write_text(
        spec.model_dump_json(exclude_none=True), encoding="utf-8"
    )
    frame = pd.DataFrame(
        {
            "id": pd.array([1], dtype="Int64"),
            "opened": pd.Series([NEWEST], dtype="datetime64[us, UTC]"),
        }
    )
    published.write_version(settings, spec.id, frame, "v" * 64, "run-1")
    state: State = freshness(return_state=True)
    assert state.is_completed(), state.message
    checked = {c["dataset_id"]: c for c in state.result()}
    assert checked["cases"]["state"] == "stale"
    assert "cases" in (state.message or "")
    # the bundled datasets were never published in this var/: nothing to judge
    assert checked["la311_service_requests"]["state"] == "unknown"
