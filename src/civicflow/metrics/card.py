"""The scorecard as data: what the page, scorecard.json and scorecard.csv are made from.

Its own module so the page renderer (``site``) and the builder (``scorecard``) both
read it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from civicflow.metrics.certification import CertificationResult
from civicflow.metrics.compute import KpiResult, period_label


@dataclass
class Scorecard:
    generated_at: datetime
    results: list[KpiResult]
    certification: CertificationResult
    small_count_threshold: int
    #: a public performance_metrics.csv (a published version) sits next to the page
    has_performance_csv: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(timespec="seconds"),
            "small_count_threshold": self.small_count_threshold,
            "certification": self.certification.to_dict(),
            "kpis": [kpi_to_dict(r) for r in self.results],
        }


def rounded_share(share: float | None) -> float | None:
    return None if share is None else round(share, 1)


def _iso(value: Any) -> str:
    return value.isoformat() if value is not None else ""


def kpi_to_dict(r: KpiResult) -> dict[str, Any]:
    kpi = r.kpi
    grain = kpi.period.grain
    return {
        "id": kpi.id,
        "title": kpi.title,
        "description": kpi.description,
        "department": kpi.department,
        "owner": kpi.owner.model_dump(),
        "unit": kpi.unit,
        "decimals": kpi.decimals,
        "status": r.status,
        "reason": r.reason,
        "period": {
            "start": _iso(r.period),
            "grain": grain,
            "label": period_label(r.period, grain) if r.period else None,
        },
        "value": r.current.value if r.current and r.has_value else None,
        "records": r.current.n if r.current and not r.current.suppressed else None,
        "open_share": rounded_share(r.open_share),
        "provisional": r.status == "provisional",
        "target": kpi.target.model_dump() if kpi.target else None,
        "min_records": r.min_records,
        "source": None
        if r.source is None
        else {
            "dataset": r.source.dataset_id,
            "title": r.source.title,
            "version": r.source.version,
            "run_id": r.source.run_id,
            "published_at": r.source.published_at,
            "rows": r.source.rows,
            "data_url": r.source.portal_path,
        },
        "series": [
            {
                "period": p.period.isoformat(),
                "value": p.value,
                "records": None if p.suppressed else p.n,
                "suppressed": p.suppressed,
                "open_share": rounded_share(p.open_share),
                "provisional": r.is_provisional(p),
            }
            for p in r.series
        ],
        "breakdowns": [
            {
                "dimension": b.column,
                "title": b.title,
                "equity": b.equity,
                "period": b.period.isoformat(),
                "groups": [
                    {
                        "key": g.key,
                        "label": g.label,
                        "value": g.value,
                        "records": None if g.suppressed else g.n,
                        "suppressed": g.suppressed,
                    }
                    for g in b.groups
                ],
            }
            for b in r.breakdowns
        ],
        "sql": r.sql,
    }
