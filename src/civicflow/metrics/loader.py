"""Read the files in ``metrics/`` with the dataset-spec loader's file:line: key errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from civicflow.metrics.models import AttestationsFile, CertificationConfig, Kpi
from civicflow.spec.errors import SpecError, SpecProblem
from civicflow.spec.loader import load_each, load_model, load_named

KPI_DIR = "kpis"
CERTIFICATION_FILE = "certification.yaml"
ATTESTATIONS_FILE = "attestations.yaml"


def kpi_paths(metrics_dir: Path) -> list[Path]:
    return sorted((metrics_dir / KPI_DIR).glob("*.yaml"))


def load_kpi(path: Path) -> Kpi:
    """One KPI file; its id must match the file name."""
    return load_named(Kpi, path)


def load_kpis(metrics_dir: Path) -> dict[str, Kpi]:
    """Every KPI in ``metrics/kpis``; all problems from all files in one SpecError."""
    return load_each(kpi_paths(metrics_dir), load_kpi)


def load_certification(metrics_dir: Path) -> CertificationConfig:
    path = metrics_dir / CERTIFICATION_FILE
    if not path.is_file():
        raise SpecError([SpecProblem(path, "", "no certification file (criteria and levels)")])
    return load_model(CertificationConfig, path)


def load_attestations(metrics_dir: Path) -> AttestationsFile:
    """Attestations; a missing file means none (every attested criterion is unmet)."""
    path = metrics_dir / ATTESTATIONS_FILE
    if not path.is_file():
        return AttestationsFile()
    return load_model(AttestationsFile, path)


@dataclass(frozen=True)
class MetricsConfig:
    """Everything in ``metrics/``, validated."""

    kpis: dict[str, Kpi]
    certification: CertificationConfig
    attestations: AttestationsFile


def load_metrics(metrics_dir: Path) -> MetricsConfig:
    problems: list[SpecProblem] = []
    kpis: dict[str, Kpi] = {}
    cert: CertificationConfig | None = None
    attestations = AttestationsFile()
    try:
        kpis = load_kpis(metrics_dir)
    except SpecError as exc:
        problems.extend(exc.problems)
    try:
        cert = load_certification(metrics_dir)
    except SpecError as exc:
        problems.extend(exc.problems)
    try:
        attestations = load_attestations(metrics_dir)
    except SpecError as exc:
        problems.extend(exc.problems)
    if problems or cert is None:
        raise SpecError(problems)
    return MetricsConfig(kpis, cert, attestations)
