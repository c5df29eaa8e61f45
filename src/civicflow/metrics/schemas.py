"""JSON Schemas of the metrics files, published in ``metrics/`` for editors (kept in sync by a test)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from civicflow.metrics.models import AttestationsFile, CertificationConfig, Kpi
from civicflow.spec import schema

#: file name in metrics/ -> (model, title)
SCHEMAS: dict[str, tuple[type[BaseModel], str]] = {
    "kpi.schema.json": (Kpi, "civicflow KPI definition"),
    "certification.schema.json": (CertificationConfig, "civicflow certification criteria"),
    "attestations.schema.json": (AttestationsFile, "civicflow attestations"),
}


def render(name: str) -> str:
    model, title = SCHEMAS[name]
    return schema.render(model, title)


def write_all(metrics_dir: Path) -> dict[Path, bool]:
    """Write every schema; maps each path to whether it changed."""
    metrics_dir.mkdir(parents=True, exist_ok=True)
    return {
        metrics_dir / name: schema.write(metrics_dir / name, model, title)
        for name, (model, title) in SCHEMAS.items()
    }
