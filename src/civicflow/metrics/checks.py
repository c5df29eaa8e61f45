"""The auto checks of the certification, registered by name.

Each check scores items (datasets, departments, runs, KPIs) from ``Inputs``, the
evidence gathered once: the catalog, the published versions and what they hold, the
run ledger, the KPI results. ``certification.assess`` turns the share of passing items
into met or unmet. Public texts here name outcomes, checks and counts, never a value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from civicflow import freshness
from civicflow.freshness import RecordDate
from civicflow.ledger import RunRecord
from civicflow.metrics import evidence
from civicflow.metrics.compute import KpiResult
from civicflow.metrics.models import (
    Attestation,
    DataDictionary,
    DatasetPublished,
    DepartmentsPublishing,
    Kpi,
    KpiCurrent,
    KpiEquity,
    KpiTargets,
    MetadataComplete,
    PrivacyClean,
    RunsPassing,
    Timeliness,
)
from civicflow.published import Manifest
from civicflow.spec.models import DatasetSpec

OPEN_LICENSES = {
    "CC0-1.0",
    "PDDL-1.0",
    "CC-BY-4.0",
    "CC-BY-SA-4.0",
    "ODC-By-1.0",
    "ODbL-1.0",
    "CC-BY-3.0",
    "CC-BY-SA-3.0",
}
# SPDX ids recognised for the conformance dimension (open and common non-open ones).
KNOWN_LICENSES = OPEN_LICENSES | {
    "CC-BY-NC-4.0",
    "CC-BY-ND-4.0",
    "CC-BY-NC-SA-4.0",
    "LicenseRef-Proprietary",
}
GOOD_OUTCOMES = ("published", "unchanged")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class Inputs:
    """Everything the checks read, gathered once (tests build it directly)."""

    catalog: dict[str, DatasetSpec]
    latest: dict[str, Manifest]
    runs: list[RunRecord]
    kpis: dict[str, Kpi]
    kpi_results: list[KpiResult] | None
    attestations: list[Attestation]
    now: datetime
    #: privacy reports (JSON) of the runs that published the current versions, by dataset
    privacy_reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: latest record date in each published version (timeliness reads the data, not runs)
    record_dates: dict[str, RecordDate] = field(default_factory=dict)
    #: open formats each published version is verifiably in
    formats: dict[str, list[str]] = field(default_factory=dict)
    #: datasets whose expectation suite file exists
    suites: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Item:
    """One thing a check scored (a dataset, a department, a run, a KPI)."""

    name: str
    ok: bool
    detail: str


@dataclass
class CheckOutcome:
    items: list[Item]
    #: what the share is of, e.g. "datasets refreshed within their declared frequency"
    noun: str
    note: str | None = None


# -- auto checks: registered by name ------------------------------------------------------

CheckFn = Callable[[Any, Inputs], CheckOutcome]
CHECKS: dict[str, CheckFn] = {}


def register_check(name: str) -> Callable[[CheckFn], CheckFn]:
    def decorate(fn: CheckFn) -> CheckFn:
        CHECKS[name] = fn
        return fn

    return decorate


def registered_checks() -> list[str]:
    return sorted(CHECKS)


@register_check("departments_publishing")
def _departments(cfg: DepartmentsPublishing, inputs: Inputs) -> CheckOutcome:
    departments: dict[str, list[str]] = {}
    for spec in inputs.catalog.values():
        departments.setdefault(spec.department, [])
        if spec.id in inputs.latest:
            departments[spec.department].append(spec.id)
    items = [
        Item(
            dept,
            bool(ids),
            f"publishes {', '.join(sorted(ids))}" if ids else "no published dataset yet",
        )
        for dept, ids in sorted(departments.items())
    ]
    return CheckOutcome(items, "departments in the catalog with at least one published dataset")


def metadata_scores(
    spec: DatasetSpec, manifest: Manifest | None, formats: list[str] | None = None
) -> dict[str, Any]:
    """Open Data Portal Watch dimensions (existence, conformance, openness) and DCAT-US fields."""
    modified = manifest.published_at if manifest else None
    existence = {
        "title": bool(spec.title.strip()),
        "description": bool(spec.description.strip()),
        "publisher": bool(spec.department.strip()),
        "contact_point": bool(spec.steward.name and spec.steward.email),
        "license": bool(spec.license.strip()),
        "update_frequency": bool(spec.update_frequency),
        "category": bool(spec.category.strip()),
        "keywords": bool(spec.tags),
        "provenance": bool(spec.provenance and spec.provenance.strip()),
        "modified": modified is not None,
        "data_dictionary": all(f.description.strip() for f in spec.published_fields()),
    }
    try:
        modified_ok = modified is not None and datetime.fromisoformat(modified) is not None
    except ValueError:
        modified_ok = False
    conformance = {
        "contact_email": bool(_EMAIL.match(spec.steward.email)),
        "license_id": spec.license in KNOWN_LICENSES,
        "modified_iso8601": modified_ok,
        "keywords_nonblank": bool(spec.tags) and all(t.strip() for t in spec.tags),
        "access_level": spec.access_level in ("public", "restricted public", "non-public"),
    }
    openness = {
        "open_license": spec.license in OPEN_LICENSES,
        # what was published, checked on the file itself (not assumed)
        "open_format": bool(formats),
        "public_access": spec.access_level == "public",
    }
    # DCAT-US (Project Open Data v1.1) required fields that apply to a city catalog.
    dcat = {
        "title": existence["title"],
        "description": existence["description"],
        "keyword": existence["keywords"],
        "modified": existence["modified"],
        "publisher": existence["publisher"],
        "contactPoint": existence["contact_point"],
        "identifier": bool(spec.id),
        "accessLevel": bool(spec.access_level),
    }

    def pct(d: dict[str, bool]) -> float:
        return 100.0 * sum(d.values()) / len(d)

    return {
        "existence": pct(existence),
        "conformance": pct(conformance),
        "openness": pct(openness),
        "dcat_missing": [k for k, v in dcat.items() if not v],
        "failed": [k for d in (existence, conformance, openness) for k, v in d.items() if not v],
    }


@register_check("metadata_complete")
def _metadata(cfg: MetadataComplete, inputs: Inputs) -> CheckOutcome:
    items = []
    for dataset_id, spec in sorted(inputs.catalog.items()):
        s = metadata_scores(spec, inputs.latest.get(dataset_id), inputs.formats.get(dataset_id))
        ok = (
            not s["dcat_missing"]
            and min(s["existence"], s["conformance"], s["openness"]) >= cfg.min_score
        )
        detail = f"existence {s['existence']:.0f} %, conformance {s['conformance']:.0f} %, openness {s['openness']:.0f} %"
        if s["dcat_missing"]:
            detail += f"; DCAT-US fields missing: {', '.join(s['dcat_missing'])}"
        elif s["failed"]:
            detail += f"; falls short on: {', '.join(s['failed'])}"
        items.append(Item(dataset_id, ok, detail))
    return CheckOutcome(items, "datasets with complete metadata")


def _timely(
    dataset_id: str, freq: str, found: RecordDate | None, inputs: Inputs, grace: float
) -> Item:
    """One dataset: is its newest record within its declared frequency times ``grace``?"""
    period = freshness.PERIOD_DAYS.get(freq)
    allowed = None if period is None else timedelta(days=period * grace)
    verdict = freshness.judge(freq, found, inputs.now, allowed)
    return Item(dataset_id, verdict.state == "fresh", verdict.detail)


@register_check("timeliness")
def _timeliness(cfg: Timeliness, inputs: Inputs) -> CheckOutcome:
    # From the data itself: re-running a pipeline over old data does not make it fresh.
    items = [
        _timely(i, str(spec.update_frequency), inputs.record_dates.get(i), inputs, cfg.grace)
        for i, spec in sorted(inputs.catalog.items())
    ]
    return CheckOutcome(items, "datasets whose latest record is within their declared frequency")


def run_summary(run: RunRecord) -> str:
    """A run for public pages: outcome, check names and counts, never the ledger reason
    (which may, from older runs, quote a source value)."""
    parts: list[str] = [run.outcome]
    if run.critical_failed:
        names = evidence.failed_check_names(run.report_path)
        parts.append(
            f"{run.critical_failed} critical checks failed"
            + (f" ({'; '.join(names[:5])})" if names else "")
        )
    elif run.outcome in GOOD_OUTCOMES:
        parts.append(f"{run.critical_passed} critical checks passed")
    if run.privacy_findings:
        parts.append(f"{run.privacy_findings} privacy scan findings")
    if run.outcome == "failed":
        parts.append("the run stopped with an error (see civicflow runs)")
    return ", ".join(parts)


@register_check("runs_passing")
def _runs(cfg: RunsPassing, inputs: Inputs) -> CheckOutcome:
    since = inputs.now - timedelta(days=cfg.window_days)
    recent = sorted((r for r in inputs.runs if r.started_at >= since), key=lambda r: r.started_at)
    # The project rule: no suite file means the content was never checked.
    no_suite = {i for i in inputs.catalog if not inputs.suites.get(i, False)}
    items = [
        Item(
            f"{r.dataset_id} {r.run_id}",
            r.outcome in GOOD_OUTCOMES and r.critical_failed == 0 and r.dataset_id not in no_suite,
            run_summary(r) + (", no expectation suite" if r.dataset_id in no_suite else ""),
        )
        for r in recent
    ]
    items += [
        Item(i, False, f"dataset {i} has no expectation suite file: its content is not checked")
        for i in sorted(no_suite)
    ]
    return CheckOutcome(
        items, f"runs in the last {cfg.window_days} days that passed every critical check"
    )


@register_check("privacy_clean")
def _privacy(cfg: PrivacyClean, inputs: Inputs) -> CheckOutcome:
    by_run = {(r.dataset_id, r.run_id): r for r in inputs.runs}
    items = []
    for dataset_id, manifest in sorted(inputs.latest.items()):
        spec = inputs.catalog[dataset_id]
        run = by_run.get((dataset_id, manifest.run_id))
        problems = []
        if spec.privacy.review is None:
            problems.append("no privacy review in the spec")
        allowed = 0
        report = inputs.privacy_reports.get(dataset_id)
        if run is None:
            problems.append(f"no ledger record of publishing run {manifest.run_id}")
        elif report is not None:
            # The run's own report tells findings a written allowance let through from real ones.
            findings = report.get("findings", [])
            unallowed = sum(1 for f in findings if not f.get("allowed"))
            allowed = len(findings) - unallowed
            if unallowed:
                problems.append(
                    f"{unallowed} unallowed scan finding(s) on publishing run {run.run_id}"
                )
        elif run.privacy_findings:
            problems.append(
                f"{run.privacy_findings} scan finding(s) on publishing run {run.run_id} (no privacy report to tell allowed ones apart)"
            )
        if problems:
            items.append(Item(dataset_id, False, "; ".join(problems)))
        else:
            review = spec.privacy.review
            assert review is not None
            note = (
                f" ({allowed} finding(s) allowed by the spec, each with a written reason)"
                if allowed
                else ""
            )
            items.append(
                Item(
                    dataset_id,
                    True,
                    f"reviewed by {review.reviewed_by} on {review.date}; clean scan on run {manifest.run_id}{note}",
                )
            )
    return CheckOutcome(items, "published datasets with a privacy review and a clean scan")


def _documents(name: str, description: str, min_len: int) -> bool:
    text = description.strip()
    return len(text) >= min_len and text.lower().replace(" ", "_").rstrip(".") != name.lower()


@register_check("data_dictionary")
def _dictionary(cfg: DataDictionary, inputs: Inputs) -> CheckOutcome:
    items = []
    for dataset_id, manifest in sorted(inputs.latest.items()):
        spec = inputs.catalog[dataset_id]
        fields = {f.name: f for f in spec.published_fields()}
        undocumented = [
            c
            for c in manifest.columns
            if c not in fields or not _documents(c, fields[c].description, cfg.min_description)
        ]
        detail = (
            f"{len(manifest.columns)} columns described"
            if not undocumented
            else f"undocumented columns: {', '.join(undocumented)}"
        )
        items.append(Item(dataset_id, not undocumented, detail))
    return CheckOutcome(items, "published datasets with every column described")


@register_check("kpi_equity")
def _equity(cfg: KpiEquity, inputs: Inputs) -> CheckOutcome:
    items = []
    for kpi_id, kpi in sorted(inputs.kpis.items()):
        eq = kpi.equity_dimensions
        items.append(
            Item(
                kpi_id,
                bool(eq),
                f"by {', '.join(d.title.lower() for d in eq)}" if eq else "no equity dimension",
            )
        )
    return CheckOutcome(items, "KPIs broken down by at least one equity dimension")


@register_check("kpi_targets")
def _targets(cfg: KpiTargets, inputs: Inputs) -> CheckOutcome:
    items = []
    for kpi_id, kpi in sorted(inputs.kpis.items()):
        t = kpi.target
        detail = (
            f"{'≤' if t.direction == 'lower_is_better' else '≥'} {t.value:g} {kpi.unit} ({t.source})"
            if t
            else "no target"
        )
        items.append(Item(kpi_id, t is not None, detail))
    return CheckOutcome(items, "KPIs with a target and its source")


@register_check("kpi_current")
def _current(cfg: KpiCurrent, inputs: Inputs) -> CheckOutcome:
    if inputs.kpi_results is None:
        return CheckOutcome(
            [],
            "KPIs computed from current published data",
            note="KPIs were not computed in this run",
        )
    items = [
        Item(r.kpi.id, r.has_value, r.reason or "computed from the current published version")
        for r in inputs.kpi_results
    ]
    return CheckOutcome(items, "KPIs computed from current published data")


@register_check("dataset_published")
def _dataset_published(cfg: DatasetPublished, inputs: Inputs) -> CheckOutcome:
    manifest = inputs.latest.get(cfg.dataset)
    detail = (
        f"version {manifest.version[:12]} published {manifest.published_at}"
        if manifest
        else "never published"
    )
    return CheckOutcome(
        [Item(cfg.dataset, manifest is not None, detail)], f"dataset {cfg.dataset} published"
    )
