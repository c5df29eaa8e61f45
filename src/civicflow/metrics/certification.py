"""Assess the certification criteria from the catalog, the run ledger and published data.

Each auto check is a small function registered by name (``checks``); it scores items (datasets,
departments, runs, KPIs), and the criterion is met when the share of passing items
reaches the configured ``min_share``. Attested criteria are met by a current
attestation (an expired one counts as unmet). Levels and thresholds come from
``metrics/certification.yaml``; comparisons are exact (fractions), so 51 % means 51 %.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

from civicflow import published
from civicflow.ledger import Ledger
from civicflow.metrics import evidence
from civicflow.metrics.checks import (
    CHECKS,
    CheckOutcome,
    Inputs,
    Item,
    metadata_scores,
    registered_checks,
    run_summary,
)
from civicflow.metrics.compute import KpiResult
from civicflow.metrics.models import Attestation, CertificationConfig, Criterion, Kpi
from civicflow.settings import Settings
from civicflow.spec.models import DatasetSpec

__all__ = [
    "CertificationResult",
    "CheckOutcome",
    "CriterionResult",
    "Inputs",
    "Item",
    "assess",
    "gather",
    "metadata_scores",
    "registered_checks",
    "run_summary",
]


def gather(
    settings: Settings,
    catalog: dict[str, DatasetSpec],
    kpis: dict[str, Kpi],
    kpi_results: list[KpiResult] | None,
    attestations: list[Attestation],
    now: datetime | None = None,
) -> Inputs:
    latest = {i: m for i in catalog if (m := published.latest(settings, i)) is not None}
    runs = Ledger(settings.ledger_path).runs() if settings.ledger_path.exists() else []
    reports = {}
    by_run = {(r.dataset_id, r.run_id): r for r in runs}
    for dataset_id, manifest in latest.items():
        run = by_run.get((dataset_id, manifest.run_id))
        if run is not None and run.privacy_report_path and Path(run.privacy_report_path).is_file():
            reports[dataset_id] = json.loads(
                Path(run.privacy_report_path).read_text(encoding="utf-8")
            )
    now = now or datetime.now(UTC)
    return Inputs(
        catalog,
        latest,
        runs,
        kpis,
        kpi_results,
        attestations,
        now,
        reports,
        record_dates={i: evidence.latest_record(catalog[i], m) for i, m in latest.items()},
        formats={i: evidence.open_formats(m) for i, m in latest.items()},
        suites={i: evidence.has_suite(settings, spec) for i, spec in catalog.items()},
    )


@dataclass
class CriterionResult:
    criterion: Criterion
    met: bool
    evidence: str
    missing: str | None = None
    share: float | None = None
    items: list[Item] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        c = self.criterion
        return {
            "id": c.id,
            "practice": c.practice,
            "practice_area": c.practice_area,
            "standard": c.standard.model_dump() if c.standard else None,
            "text": c.text,
            "weight": c.weight,
            "assessment": c.assessment,
            "met": self.met,
            "share": self.share,
            "evidence": self.evidence,
            "missing": self.missing,
            "items": [{"name": i.name, "ok": i.ok, "detail": i.detail} for i in self.items],
        }


@dataclass
class CertificationResult:
    standard: str
    scoring: str
    level: str
    achieved: bool
    percent: float
    points: float
    total: float
    next_level: str | None
    next_level_percent: float | None
    points_to_next: float | None
    criteria: list[CriterionResult]
    levels: list[dict[str, Any]]

    @property
    def missing_for_next(self) -> list[CriterionResult]:
        unmet = [r for r in self.criteria if not r.met]
        return sorted(unmet, key=lambda r: -r.criterion.weight)

    def to_dict(self) -> dict[str, Any]:
        return {
            "standard": self.standard,
            "scoring": self.scoring,
            "level": self.level,
            "achieved": self.achieved,
            "percent": round(self.percent, 1),
            "points": self.points,
            "total": self.total,
            "levels": self.levels,
            "next_level": self.next_level,
            "next_level_percent": self.next_level_percent,
            "points_to_next": self.points_to_next,
            "missing_for_next": [r.criterion.id for r in self.missing_for_next]
            if self.next_level
            else [],
            "criteria": [r.to_dict() for r in self.criteria],
        }


# -- assessment ----------------------------------------------------------------------------


def _exact(number: float) -> Fraction:
    """The decimal as written in the YAML (51.5 is 103/2, not its binary approximation)."""
    return Fraction(str(number))


def _assess_auto(criterion: Criterion, inputs: Inputs) -> CriterionResult:
    cfg = criterion.auto
    assert cfg is not None
    outcome = CHECKS[cfg.check](cfg, inputs)
    items = outcome.items
    if not items:
        note = outcome.note or f"nothing to assess: there are no {outcome.noun}"
        return CriterionResult(criterion, False, note, missing=note, share=None, items=[])
    passed = sum(1 for i in items if i.ok)
    share = 100.0 * passed / len(items)
    met = Fraction(passed * 100, len(items)) >= _exact(cfg.min_share)
    evidence = f"{passed} of {len(items)} {outcome.noun} ({share:.0f} %; needs {cfg.min_share:g} %)"
    missing = None
    if not met:
        failing = [f"{i.name}: {i.detail}" for i in items if not i.ok]
        missing = "; ".join(failing[:5]) + (
            f"; and {len(failing) - 5} more" if len(failing) > 5 else ""
        )
    return CriterionResult(criterion, met, evidence, missing=missing, share=share, items=items)


def _attestation_item(a: Attestation, today: date) -> Item:
    sample = evidence.sample_reason(a)
    valid = a.date <= today <= a.expires
    note = " (expired)" if today > a.expires else " (not yet valid)" if a.date > today else ""
    if sample:
        note += f" (sample: {sample}; counts for nothing)"
    return Item(
        a.attested_by, valid and sample is None, f"{a.date} → {a.expires}: {a.evidence_url}{note}"
    )


def _assess_attested(criterion: Criterion, inputs: Inputs) -> CriterionResult:
    today = inputs.now.date()
    mine = sorted(
        (a for a in inputs.attestations if a.criterion == criterion.id),
        key=lambda a: a.date,
        reverse=True,
    )
    items = [_attestation_item(a, today) for a in mine]
    # Samples count for nothing, whatever their dates: only the city's own evidence does.
    real = [a for a in mine if evidence.sample_reason(a) is None]
    current = [a for a in real if a.date <= today <= a.expires]
    hint = f" Evidence needed: {criterion.evidence_hint}" if criterion.evidence_hint else ""
    if current:
        a = current[0]
        return CriterionResult(
            criterion,
            True,
            f"attested by {a.attested_by} on {a.date}, valid until {a.expires}: {a.evidence_url}",
            items=items,
        )
    if real:
        a = real[0]
        state = f"expired on {a.expires}" if today > a.expires else f"only valid from {a.date}"
        message = f"the attestation by {a.attested_by} {state}"
        return CriterionResult(
            criterion,
            False,
            message,
            missing=f"renew the attestation ({message}).{hint}",
            items=items,
        )
    if mine:
        why = evidence.sample_reason(mine[0])
        message = f"only a sample attestation ({why}): samples count for nothing"
        return CriterionResult(
            criterion,
            False,
            message,
            missing=f"{message}; replace it in metrics/attestations.yaml with the city's own evidence.{hint}",
            items=items,
        )
    return CriterionResult(
        criterion,
        False,
        "no attestation",
        missing=f"add an attestation to metrics/attestations.yaml.{hint}",
        items=items,
    )


def assess(config: CertificationConfig, inputs: Inputs) -> CertificationResult:
    """Every criterion met or unmet with its evidence, the level and what the next one needs."""
    results = [
        _assess_auto(c, inputs) if c.assessment == "auto" else _assess_attested(c, inputs)
        for c in config.criteria
    ]
    weighted = config.scoring == "weighted"
    weight = [_exact(r.criterion.weight) if weighted else Fraction(1) for r in results]
    total = sum(weight, Fraction(0))
    points = sum((w for w, r in zip(weight, results, strict=True) if r.met), Fraction(0))
    level, achieved, next_level = config.below_levels, False, None
    for lv in config.levels:
        if points * 100 >= _exact(lv.min_percent) * total:
            level, achieved = lv.name, True
        else:
            next_level = lv
            break
    to_next = None
    if next_level is not None:
        needed = _exact(next_level.min_percent) * total / 100 - points
        to_next = float(math.ceil(needed)) if not weighted else float(needed)
    return CertificationResult(
        standard=config.standard,
        scoring=config.scoring,
        level=level,
        achieved=achieved,
        percent=float(points * 100 / total),
        points=float(points),
        total=float(total),
        next_level=next_level.name if next_level else None,
        next_level_percent=next_level.min_percent if next_level else None,
        points_to_next=to_next,
        criteria=results,
        levels=[lv.model_dump() for lv in config.levels],
    )
