"""Certification: every bundled criterion flips from met to unmet by one change to a catalog
built here; levels are exact at their thresholds."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from civicflow.ledger import Ledger, RunRecord
from civicflow.metrics.certification import Inputs, assess, gather, registered_checks
from civicflow.metrics.compute import KpiResult
from civicflow.metrics.evidence import RecordDate
from civicflow.metrics.loader import load_certification
from civicflow.metrics.models import Attestation, CertificationConfig, Kpi
from civicflow.published import Manifest
from civicflow.settings import Settings
from civicflow.spec.models import DatasetPrivacy, DatasetSpec

PROJECT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CONFIG = load_certification(PROJECT / "metrics")


def spec(dataset_id: str, department: str, frequency: str = "daily") -> DatasetSpec:
    return DatasetSpec.model_validate(
        {
            "id": dataset_id,
            "title": f"The {dataset_id} dataset",
            "description": f"Everything about {dataset_id}, one row per record.",
            "department": department,
            "steward": {"name": "Steward", "email": "steward@lacity.example"},
            "license": "CC0-1.0",
            "update_frequency": frequency,
            "category": "Tests",
            "tags": ["test"],
            "provenance": "Made in the test.",
            "source": {"kind": "csv", "path": f"data/{dataset_id}.csv"},
            "privacy": {"review": {"reviewed_by": "Privacy Office", "date": "2026-11-01"}},
            "fields": [
                {"name": "record_id", "type": "string", "description": "Identifier of the record."},
                {"name": "amount", "type": "number", "description": "Amount recorded, in dollars."},
            ],
        }
    )


def manifest(dataset_id: str, run_id: str) -> Manifest:
    return Manifest(
        dataset_id,
        "v" * 64,
        run_id,
        10,
        "s" * 64,
        (NOW - timedelta(hours=2)).isoformat(),
        Path(f"/nowhere/{dataset_id}.parquet"),
        ["record_id", "amount"],
    )


def run(
    dataset_id: str,
    run_id: str,
    outcome: str = "published",
    age: timedelta = timedelta(hours=2),
    **extra: object,
) -> RunRecord:
    finished = NOW - age
    return RunRecord(
        dataset_id,
        run_id,
        finished - timedelta(seconds=30),
        finished,
        outcome,
        outcome,
        10,
        10,
        critical_passed=3,
        **extra,
    )  # type: ignore[arg-type]


def kpi(kpi_id: str, equity: bool = True, target: bool = True) -> Kpi:
    return Kpi.model_validate(
        {
            "id": kpi_id,
            "title": f"KPI {kpi_id}",
            "description": "A KPI made for the certification test.",
            "department": "A",
            "owner": {"name": "Owner", "email": "o@lacity.example"},
            "dataset": "alpha",
            "measure": {"kind": "count"},
            "period": {"column": "record_id", "grain": "day"},
            "dimensions": [{"column": "amount", "title": "By district", "equity": equity}],
            "unit": "records",
            **(
                {
                    "target": {
                        "value": 1,
                        "direction": "higher_is_better",
                        "source": "Set in the test for the test.",
                    }
                }
                if target
                else {}
            ),
        }
    )


def attestation(
    criterion: str, start: date = date(2026, 1, 1), end: date = date(2027, 1, 1)
) -> Attestation:
    return Attestation(
        criterion=criterion,
        evidence_url=f"https://data.lacity.org/evidence/{criterion}",
        attested_by="Chief Data Officer",
        date=start,
        expires=end,
    )


def baseline() -> Inputs:
    """A small city where every bundled criterion is met."""
    catalog = {
        "alpha": spec("alpha", "A"),
        "beta": spec("beta", "B", "monthly"),
        "performance_metrics": spec("performance_metrics", "C"),
    }
    latest = {i: manifest(i, f"run-{i}") for i in catalog}
    runs = [run(i, f"run-{i}") for i in catalog]
    kpis = {"k1": kpi("k1"), "k2": kpi("k2")}
    results = [KpiResult(kpi=k, status="on_track") for k in kpis.values()]
    attested = [c.id for c in CONFIG.criteria if c.assessment == "attested"]
    return Inputs(
        catalog,
        latest,
        runs,
        kpis,
        results,
        [attestation(c) for c in attested],
        NOW,
        record_dates={i: RecordDate("record_date", NOW - timedelta(hours=20)) for i in catalog},
        formats={i: ["parquet"] for i in catalog},
        suites={i: True for i in catalog},
    )


def _met(inputs: Inputs, config: CertificationConfig = CONFIG) -> dict[str, bool]:
    return {r.criterion.id: r.met for r in assess(config, inputs).criteria}


def test_baseline_meets_every_criterion_and_reaches_the_top_level() -> None:
    result = assess(CONFIG, baseline())
    assert all(r.met for r in result.criteria), [
        (r.criterion.id, r.missing) for r in result.criteria if not r.met
    ]
    assert result.level == "Platinum" and result.next_level is None and result.percent == 100.0


def test_the_bundled_config_uses_every_registered_check() -> None:
    used = {c.auto.check for c in CONFIG.criteria if c.auto is not None}
    assert used == set(registered_checks())


def _replace_spec(inputs: Inputs, dataset_id: str, **update: object) -> None:
    inputs.catalog[dataset_id] = inputs.catalog[dataset_id].model_copy(update=update)


def _replace_attestation(inputs: Inputs, criterion: str, new: Attestation | None) -> None:
    inputs.attestations = [a for a in inputs.attestations if a.criterion != criterion] + (
        [new] if new else []
    )


def _add_unpublished_department(i: Inputs) -> None:
    i.catalog["gamma"] = spec("gamma", "D")
    i.suites["gamma"] = True


def _add_rejected_run(i: Inputs) -> None:
    i.runs.append(
        run("alpha", "run-bad", outcome="rejected", age=timedelta(hours=1), critical_failed=1)
    )


def _drop_privacy_review(i: Inputs) -> None:
    _replace_spec(i, "beta", privacy=DatasetPrivacy())


def _add_kpi_without_equity(i: Inputs) -> None:
    i.kpis["k3"] = kpi("k3", equity=False)


def _non_open_license(i: Inputs) -> None:
    _replace_spec(i, "beta", license="LicenseRef-Proprietary")


def _stale_daily_dataset(i: Inputs) -> None:
    # the pipeline ran two hours ago, but the newest record is three days old
    i.record_dates["alpha"] = RecordDate("record_date", NOW - timedelta(days=3))


def _remove_a_dictionary(i: Inputs) -> None:
    # the published version has a column the spec does not describe
    i.latest["beta"] = dataclasses.replace(
        i.latest["beta"], columns=["record_id", "amount", "notes"]
    )


def _remove_a_target(i: Inputs) -> None:
    i.kpis["k2"] = kpi("k2", target=False)


def _kpi_without_data(i: Inputs) -> None:
    assert i.kpi_results is not None
    i.kpi_results[1] = KpiResult(kpi=i.kpis["k2"], status="no_data", reason="no rows")


def _performance_not_published(i: Inputs) -> None:
    del i.latest["performance_metrics"]


FLIPS: dict[str, Callable[[Inputs], None]] = {
    "inventory_covers_departments": _add_unpublished_department,
    "quality_checks_pass": _add_rejected_run,
    "privacy_reviewed_and_clean": _drop_privacy_review,
    "kpis_disaggregated": _add_kpi_without_equity,
    "data_governance": lambda i: _replace_attestation(
        i, "data_governance", attestation("data_governance", date(2025, 1, 1), date(2026, 11, 22))
    ),
    "data_security": lambda i: _replace_attestation(i, "data_security", None),
    "open_data_policy": lambda i: _replace_attestation(
        i, "open_data_policy", attestation("open_data_policy", date(2026, 12, 1), date(2027, 12, 1))
    ),
    "metadata_complete": _non_open_license,
    "refreshed_on_schedule": _stale_daily_dataset,
    "data_dictionaries": _remove_a_dictionary,
    "user_insights": lambda i: _replace_attestation(i, "user_insights", None),
    "kpis_have_targets": _remove_a_target,
    "kpis_current": _kpi_without_data,
    "progress_shared_publicly": _performance_not_published,
    "performance_reviews": lambda i: _replace_attestation(
        i,
        "performance_reviews",
        attestation("performance_reviews", date(2026, 1, 1), date(2026, 11, 22)),
    ),
}


def test_every_bundled_criterion_has_a_flip() -> None:
    assert set(FLIPS) == {c.id for c in CONFIG.criteria}


@pytest.mark.parametrize("criterion", sorted(FLIPS))
def test_one_change_flips_the_criterion(criterion: str) -> None:
    inputs = baseline()
    FLIPS[criterion](inputs)
    result = assess(CONFIG, inputs)
    flipped = {r.criterion.id: r for r in result.criteria if not r.met}
    assert criterion in flipped
    assert flipped[criterion].missing, "an unmet criterion says what is missing"
    # the changes are chosen to touch one criterion, except those that by nature touch more
    side_effects = {
        "inventory_covers_departments": {"metadata_complete", "refreshed_on_schedule"},
        "progress_shared_publicly": {"inventory_covers_departments", "metadata_complete"},
    }
    assert set(flipped) - {criterion} <= side_effects.get(criterion, set())


def test_evidence_and_missing_text_name_what_failed() -> None:
    inputs = baseline()
    _add_rejected_run(inputs)
    _replace_attestation(
        inputs,
        "data_governance",
        attestation("data_governance", date(2025, 1, 1), date(2026, 11, 22)),
    )
    by_id = {r.criterion.id: r for r in assess(CONFIG, inputs).criteria}
    runs = by_id["quality_checks_pass"]
    assert (
        runs.evidence
        == "3 of 4 runs in the last 90 days that passed every critical check (75 %; needs 95 %)"
    )
    assert "alpha run-bad: rejected" in (runs.missing or "") and "1 critical checks failed" in (
        runs.missing or ""
    )
    gov = by_id["data_governance"]
    assert gov.evidence == "the attestation by Chief Data Officer expired on 2026-11-22"
    assert "governance charter" in (gov.missing or "")


def _config(weights: list[float], scoring: str = "counted") -> CertificationConfig:
    return CertificationConfig.model_validate(
        {
            "standard": "test",
            "scoring": scoring,
            "levels": [
                {"name": "Silver", "min_percent": 51},
                {"name": "Gold", "min_percent": 67},
                {"name": "Platinum", "min_percent": 84},
            ],
            "criteria": [
                {
                    "id": f"c{i}",
                    "practice": "P",
                    "text": f"Criterion number {i}.",
                    "weight": w,
                    "assessment": "attested",
                }
                for i, w in enumerate(weights)
            ],
        }
    )


def _with_met(n_met: int) -> Inputs:
    return Inputs({}, {}, [], {}, None, [attestation(f"c{i}") for i in range(n_met)], NOW)


@pytest.mark.parametrize(
    ("met", "level", "next_level", "to_next"),
    [
        (50, "Not yet certified", "Silver", 1),
        (51, "Silver", "Gold", 16),
        (66, "Silver", "Gold", 1),
        (67, "Gold", "Platinum", 17),
        (83, "Gold", "Platinum", 1),
        (84, "Platinum", None, None),
        (100, "Platinum", None, None),
    ],
)
def test_counted_levels_at_their_thresholds(
    met: int, level: str, next_level: str | None, to_next: int | None
) -> None:
    result = assess(_config([1.0] * 100), _with_met(met))
    assert (result.level, result.next_level, result.points_to_next) == (level, next_level, to_next)
    assert result.percent == met
    assert len(result.missing_for_next) == 100 - met


def test_weighted_levels_are_exact_at_the_edge() -> None:
    # weights 67 + 33: meeting only the first is exactly 67 % -> Gold (no float rounding)
    config = _config([67.0, 33.0], scoring="weighted")
    assert assess(config, _with_met(1)).level == "Gold"
    # 0.51 of a total weight of 1.0 -> exactly Silver; a hair below is not
    assert assess(_config([0.51, 0.49], scoring="weighted"), _with_met(1)).level == "Silver"
    assert (
        assess(_config([0.5099, 0.4901], scoring="weighted"), _with_met(1)).level
        == "Not yet certified"
    )
    # counted scoring ignores weights: 1 of 2 is 50 %
    assert assess(_config([67.0, 33.0]), _with_met(1)).level == "Not yet certified"


def test_gather_reads_the_ledger_and_published_versions(tmp_path: Path) -> None:
    settings = Settings(project_dir=PROJECT, var_dir=tmp_path / "var")
    ledger = Ledger(settings.ledger_path)
    ledger.record(run("la311_service_requests", "r1", outcome="rejected", critical_failed=2))
    inputs = gather(
        settings,
        {"la311_service_requests": spec("la311_service_requests", "ITA")},
        {},
        None,
        [],
        NOW,
    )
    assert inputs.latest == {} and [r.run_id for r in inputs.runs] == ["r1"]
    by_id = {r.criterion.id: r for r in assess(CONFIG, inputs).criteria}
    assert not by_id["quality_checks_pass"].met and not by_id["kpis_current"].met
    assert by_id["kpis_current"].evidence == "KPIs were not computed in this run"


def test_privacy_findings_allowed_in_the_spec_do_not_count_against_a_clean_scan() -> None:
    inputs = baseline()
    allowed = {
        "column": "email",
        "detector": "email",
        "count": 99,
        "allowed": True,
        "reason": "public office mailbox",
    }
    inputs.privacy_reports["beta"] = {"findings": [allowed]}
    inputs.runs = [
        dataclasses.replace(r, privacy_findings=1) if r.dataset_id == "beta" else r
        for r in inputs.runs
    ]
    result = {r.criterion.id: r for r in assess(CONFIG, inputs).criteria}[
        "privacy_reviewed_and_clean"
    ]
    assert result.met
    assert "1 finding(s) allowed by the spec" in next(
        i.detail for i in result.items if i.name == "beta"
    )
    # an unallowed finding in the report, or findings the ledger cannot explain, fail it
    inputs.privacy_reports["beta"] = {
        "findings": [allowed, {**allowed, "detector": "phone", "allowed": False}]
    }
    assert not {r.criterion.id: r.met for r in assess(CONFIG, inputs).criteria}[
        "privacy_reviewed_and_clean"
    ]
    del inputs.privacy_reports["beta"]
    assert not {r.criterion.id: r.met for r in assess(CONFIG, inputs).criteria}[
        "privacy_reviewed_and_clean"
    ]


def _criterion(inputs: Inputs, criterion_id: str):
    return {r.criterion.id: r for r in assess(CONFIG, inputs).criteria}[criterion_id]


def test_open_format_is_read_from_what_was_published(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from civicflow.metrics.evidence import open_formats

    real = tmp_path / "real.parquet"
    pq.write_table(pa.table({"record_id": ["a"]}), real)
    fake = tmp_path / "fake.parquet"
    fake.write_text("record_id\na\n")  # a CSV under a Parquet name
    as_manifest = lambda path: dataclasses.replace(manifest("beta", "run-beta"), path=path)  # noqa: E731
    assert open_formats(as_manifest(real)) == ["parquet"]
    assert open_formats(as_manifest(fake)) == []
    assert open_formats(as_manifest(tmp_path / "missing.parquet")) == []

    inputs = baseline()
    inputs.formats["beta"] = open_formats(as_manifest(fake))
    result = _criterion(inputs, "metadata_complete")
    assert not result.met
    beta = next(i for i in result.items if i.name == "beta")
    assert not beta.ok and "falls short on: open_format" in beta.detail


def test_timeliness_reads_the_data_not_the_pipeline_runs() -> None:
    inputs = baseline()
    # 2015 data re-published every night: the runs are fresh, the data is not
    inputs.record_dates["alpha"] = RecordDate("created", datetime(2015, 6, 30, tzinfo=UTC))
    inputs.runs += [run("alpha", f"nightly-{d}", age=timedelta(days=d)) for d in range(1, 8)]
    result = _criterion(inputs, "refreshed_on_schedule")
    assert not result.met
    alpha = next(i for i in result.items if i.name == "alpha")
    assert not alpha.ok
    assert alpha.detail.startswith("daily: latest record 2015-06-30 (created), ")
    assert alpha.detail.endswith("days old, more than 1.5 days")
    # no date to read, or a date in the future, cannot count as current either
    inputs = baseline()
    inputs.record_dates["alpha"] = RecordDate(None, None, "no record date field")
    inputs.record_dates["beta"] = RecordDate("created", NOW + timedelta(days=30))
    result = _criterion(inputs, "refreshed_on_schedule")
    details = {i.name: (i.ok, i.detail) for i in result.items}
    assert details["alpha"] == (
        False,
        "daily: cannot tell how current the data is: no record date field",
    )
    assert details["beta"][0] is False and "in the future" in details["beta"][1]


def test_a_dataset_without_its_suite_fails_the_quality_criterion() -> None:
    inputs = baseline()
    inputs.suites["beta"] = False
    result = _criterion(inputs, "quality_checks_pass")
    assert not result.met
    assert "beta: dataset beta has no expectation suite file" in (result.missing or "")
    beta_run = next(i for i in result.items if i.name == "beta run-beta")
    assert not beta_run.ok and beta_run.detail.endswith("no expectation suite")


@pytest.mark.parametrize(
    ("url", "sample", "why"),
    [
        (
            "https://www.lacity.example/open-data/policy",
            False,
            "its evidence is at a reserved placeholder address (www.lacity.example)",
        ),
        ("https://example.org/policy", False, "reserved placeholder address (example.org)"),
        ("https://data.lacity.org/policy", True, "marked as a sample"),
    ],
)
def test_sample_attestations_count_for_nothing(url: str, sample: bool, why: str) -> None:
    inputs = baseline()
    current = attestation("open_data_policy").model_copy(
        update={"evidence_url": url, "sample": sample}
    )
    _replace_attestation(inputs, "open_data_policy", current)
    result = _criterion(inputs, "open_data_policy")
    assert not result.met
    assert "only a sample attestation (" in result.evidence and why in result.evidence
    assert "samples count for nothing" in result.evidence
    assert "replace it in metrics/attestations.yaml" in (result.missing or "")
    assert result.items and not result.items[0].ok


def test_the_bundled_sample_attestations_meet_nothing_and_the_page_says_why() -> None:
    from civicflow.metrics.loader import load_metrics
    from civicflow.metrics.site import _certification

    attestations = load_metrics(PROJECT / "metrics").attestations.attestations
    assert attestations and all(a.sample for a in attestations)
    inputs = baseline()
    inputs.attestations = attestations
    cert = assess(CONFIG, inputs)
    attested = [r for r in cert.criteria if r.criterion.assessment == "attested"]
    assert attested and not any(r.met for r in attested)
    with_sample = [r for r in attested if r.items]
    assert with_sample and all("samples count for nothing" in r.evidence for r in with_sample)
    assert "samples count for nothing" in _certification(cert)


def test_public_run_details_name_checks_and_counts_never_the_ledger_reason(
    tmp_path: Path,
) -> None:
    import json

    from civicflow.metrics.site import _certification

    report = tmp_path / "run-bad.json"
    report.write_text(
        json.dumps(
            {
                "checks": [
                    {
                        "name": "expect_column_values_to_be_in_set",
                        "columns": ["status"],
                        "severity": "critical",
                        "status": "failed",
                        "message": "value 'Maria Lopez' is not allowed",
                        "examples": [{"row": 3, "value": "Maria Lopez"}],
                    },
                    {
                        "name": "row_count",
                        "columns": [],
                        "severity": "critical",
                        "status": "passed",
                    },
                ]
            }
        )
    )
    inputs = baseline()
    inputs.runs.append(
        run(
            "alpha",
            "run-bad",
            outcome="rejected",
            age=timedelta(hours=1),
            critical_failed=1,
            privacy_findings=2,
            report_path=str(report),
        )
    )
    inputs.runs[-1] = dataclasses.replace(
        inputs.runs[-1], reason="REJECTED: status: value 'Maria Lopez' is not in the allowed set"
    )
    cert = assess(CONFIG, inputs)
    result = {r.criterion.id: r for r in cert.criteria}["quality_checks_pass"]
    bad = next(i for i in result.items if i.name == "alpha run-bad")
    assert bad.detail == (
        "rejected, 1 critical checks failed (expect_column_values_to_be_in_set (status)), "
        "2 privacy scan findings"
    )
    public = json.dumps(cert.to_dict()) + _certification(cert)
    assert "Maria" not in public and "expect_column_values_to_be_in_set (status)" in public


def test_gather_reads_record_dates_formats_and_suites_from_published_files(
    tmp_path: Path,
) -> None:
    import pyarrow.parquet as pq

    from civicflow.spec import load_all
    from tests.test_metrics_kpis import publish_parquet

    settings = Settings(project_dir=PROJECT, var_dir=tmp_path / "var")
    published_now = publish_parquet(settings, "lax_passenger_traffic")
    catalog = load_all(settings.datasets_dir)
    inputs = gather(settings, catalog, {}, None, [], NOW)
    lax = catalog["lax_passenger_traffic"]
    column = pq.read_table(published_now.path).column(lax.record_date_field).to_pylist()
    found = inputs.record_dates["lax_passenger_traffic"]
    assert found.latest is not None and found.latest.replace(tzinfo=None) == max(column)
    assert inputs.formats["lax_passenger_traffic"] == ["parquet"]
    assert all(inputs.suites.values()) and set(inputs.suites) == set(catalog)
    # published a moment ago, but the data's own dates are what count
    item = next(
        i
        for i in _criterion(inputs, "refreshed_on_schedule").items
        if i.name == "lax_passenger_traffic"
    )
    assert not item.ok and item.detail.startswith(
        f"monthly: latest record {found.latest:%Y-%m-%d} ({lax.record_date_field})"
    )


def test_record_date_must_name_a_published_date_field() -> None:
    from pydantic import ValidationError

    data = spec("alpha", "A").model_dump(mode="json", exclude_none=True)
    data["fields"].append({"name": "created", "type": "date", "description": "When it happened."})
    assert DatasetSpec.model_validate(data).record_date_field is None  # nullable: no default
    assert DatasetSpec.model_validate(data | {"record_date": "created"}).record_date_field == (
        "created"
    )
    with pytest.raises(
        ValidationError, match="record_date names 'amount', which is not a published date"
    ):
        DatasetSpec.model_validate(data | {"record_date": "amount"})
