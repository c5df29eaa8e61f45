"""Performance metrics and the certification scorecard.

``metrics/`` holds the definitions (KPIs, criteria, attestations) as YAML; this
package validates them (``check_files``), compiles KPIs to DuckDB SQL over the
published Parquet (``compile``, ``compute``), assesses certification from the
catalog and run ledger (``certification``) and renders the scorecard
(``scorecard``, ``site``, ``charts``).
"""

from civicflow.metrics.check import check_files
from civicflow.metrics.compile import CompiledKpi, compile_kpi
from civicflow.metrics.compute import KpiResult, compute_all
from civicflow.metrics.loader import load_attestations, load_certification, load_kpis, load_metrics
from civicflow.metrics.models import AttestationsFile, CertificationConfig, Kpi

__all__ = [
    "AttestationsFile",
    "CertificationConfig",
    "CompiledKpi",
    "Kpi",
    "KpiResult",
    "check_files",
    "compile_kpi",
    "compute_all",
    "load_attestations",
    "load_certification",
    "load_kpis",
    "load_metrics",
]
