"""The scale benchmark's results: the machine, latency percentiles, the issue's targets
judged against the figures, and the printed table (metric, value, target, met?).

Pure functions over the results dictionary ``bench_scale.py`` builds (and writes to
bench/results.json); nothing here times or starts anything, so the test runs it on
tiny made-up results.

Results shape (every figure may be missing when its measurement failed)::

    {"machine": {...}, "config": {...},
     "sizes": {"1000000": {"rows": 1000000,
                           "publish": {"wall_s", "pipeline_peak_rss_mib", ...},
                           "stages": {"timings_s": {"extract": ...}, "total_s",
                                      "cpu_s": {"publish_process", ...}, ...},
                           "incremental": {"wall_s", "share_of_full", ...},
                           "scorecard": {"flow_s", "wall_s"},
                           "rss": {"pipeline_mib", "portal_mib"},
                           "load": {"json": {"p50_ms", "p95_ms", "p99_ms", ...},
                                    "csv": {...}, "requests_per_s", ...},
                           "plain": {"wall_s", "peak_rss_mib"},
                           "speedup_vs_plain": 1.7},
               ...},
     "targets": [...], "table": [...]}
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


# -- the machine ------------------------------------------------------------------


def machine(project: Path | None = None) -> dict[str, Any]:
    """Cores, memory, CPU model, OS, Python, date (UTC), load average and git commit."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        model = names[0].split(":", 1)[1].strip() if names else model
    memory = None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        memory = round(int(meminfo.read_text().split()[1]) / MIB, 1)  # kB -> GiB
    os_name = platform.platform()
    release = Path("/etc/os-release")
    if release.is_file():
        for line in release.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    commit = None  # BENCH_COMMIT names it where the project is not a git checkout
    if project is not None:
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True
            ).stdout.strip()
        except OSError:
            commit = None
    return {
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "cpu": model,
        "os": os_name,
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "commit": commit or os.environ.get("BENCH_COMMIT") or None,
    }


# -- latency ----------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float], errors: int = 0) -> dict[str, Any]:
    """Count, errors and p50/p95/p99/max in milliseconds of request latencies."""

    def ms(p: float) -> float | None:
        v = percentile(seconds, p)
        return None if v is None else round(v * 1000, 1)

    return {
        "requests": len(seconds) + errors,
        "errors": errors,
        "p50_ms": ms(50),
        "p95_ms": ms(95),
        "p99_ms": ms(99),
        "max_ms": ms(100),
    }


# -- targets ----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One target of issue 13: ``path`` into a size's results, compared by ``op``."""

    key: str
    metric: str
    path: tuple[str, ...]
    op: str  # "<=" or ">="
    threshold: float
    unit: str
    #: the only size it is judged at (None: every size measured)
    rows: int | None = None

    def text(self) -> str:
        return f"{self.op} {_number(self.threshold)}{self.unit}"


TARGETS: tuple[Target, ...] = (
    Target(
        "publish_1m", "full publish end to end", ("publish", "wall_s"), "<=", 20, " s", 1_000_000
    ),
    Target("speedup_vs_plain", "speed-up vs the plain script", ("speedup_vs_plain",), ">=", 4, "x"),
    Target(
        "pipeline_rss",
        "peak RSS, pipeline process",
        ("rss", "pipeline_mib"),
        "<=",
        600,
        " MiB",
    ),
    Target("portal_rss", "peak RSS, portal process", ("rss", "portal_mib"), "<=", 600, " MiB"),
    Target(
        "incremental_share",
        "incremental 1 % republish / full",
        ("incremental", "share_of_full_pct"),
        "<=",
        10,
        " %",
    ),
    Target(
        "scorecard_5m", "scorecard flow time", ("scorecard", "flow_s"), "<=", 3, " s", 5_000_000
    ),
    Target(
        "portal_p95",
        "portal p95, filtered JSON queries",
        ("load", "json", "p95_ms"),
        "<=",
        200,
        " ms",
    ),
)


def lookup(results: Mapping[str, Any], path: Iterable[str]) -> Any:
    value: Any = results
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def met(value: float | None, op: str, threshold: float) -> bool | None:
    """Whether ``value`` meets ``op threshold``; None when there is no value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if op == "<=":
        return value <= threshold
    if op == ">=":
        return value >= threshold
    raise ValueError(f"unknown comparison {op!r}")


def judge(sizes: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every target at every size it applies to: value, met (None: not measured)."""
    measured = sorted(int(r) for r in sizes)
    out = []
    for target in TARGETS:
        wanted = [target.rows] if target.rows is not None else measured
        for rows in wanted:
            size = sizes.get(str(rows))
            value = lookup(size, target.path) if size is not None else None
            entry: dict[str, Any] = {
                "key": target.key,
                "metric": target.metric,
                "rows": rows,
                "value": value,
                "unit": target.unit.strip(),
                "target": target.text(),
                "met": met(value, target.op, target.threshold),
            }
            if size is None:
                entry["note"] = f"not measured in this run (rows {_rows_list(measured)})"
            elif value is None:
                entry["note"] = "measurement failed or not taken; see errors"
            out.append(entry)
    return out


# -- the table ----------------------------------------------------------------------


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"


def _rows_list(rows: Iterable[int]) -> str:
    return ", ".join(f"{r:,}" for r in rows) or "none"


def label(rows: int) -> str:
    """1M, 5M, 100k, 2,500 ..."""
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows % 1_000 == 0 and rows >= 10_000:
        return f"{rows // 1_000}k"
    return f"{rows:,}"


def _value(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{_number(value)}{' ' + unit if unit else ''}"


def _targets_for(rows: int, targets: Sequence[Mapping[str, Any]]) -> dict[tuple[str, ...], Any]:
    by_path: dict[tuple[str, ...], Any] = {}
    for target in TARGETS:
        for entry in targets:
            if entry["key"] == target.key and entry["rows"] == rows:
                by_path[target.path] = entry
    return by_path


def table_rows(
    sizes: Mapping[str, Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]
) -> list[dict[str, str]]:
    """The table's rows (metric, value, target, met) for every size, smallest first."""
    out: list[dict[str, str]] = []
    for rows in sorted(int(r) for r in sizes):
        size = sizes[str(rows)]
        judged = _targets_for(rows, targets)
        tag = label(rows)

        def row(
            metric: str, path: tuple[str, ...], unit: str, *, size=size, judged=judged, tag=tag
        ):
            entry = judged.get(path)
            verdict = "—"
            if entry is not None:
                verdict = {True: "yes", False: "NO", None: "not measured"}[entry["met"]]
            out.append(
                {
                    "metric": f"{tag}: {metric}",
                    "value": _value(lookup(size, path), unit),
                    "target": entry["target"] if entry is not None else "",
                    "met": verdict if entry is not None else "",
                }
            )

        row("full publish end to end (civicflow publish)", ("publish", "wall_s"), "s")
        stages = lookup(size, ("stages", "timings_s")) or {}
        for name in stages:
            row(f"  stage {name} (run_dataset)", ("stages", "timings_s", name), "s")
        if stages:
            row("  between stages", ("stages", "between_s"), "s")
            row("  run_dataset total", ("stages", "total_s"), "s")
            row("  run_dataset peak RSS", ("stages", "peak_rss_mib"), "MiB")
            row("  run_dataset check worker peak RSS", ("stages", "worker_peak_rss_mib"), "MiB")
            for who in ("publish_process", "check_workers", "portal"):
                what = who.replace("_", " ")
                row(f"  run_dataset CPU, {what}", ("stages", "cpu_s", who), "s")
        if lookup(size, ("plain",)) is not None:
            row("plain script (pandas + GX + sqlite-utils)", ("plain", "wall_s"), "s")
            row("  plain script peak RSS", ("plain", "peak_rss_mib"), "MiB")
            row("speed-up vs the plain script", ("speedup_vs_plain",), "x")
        row("incremental 1 % republish", ("incremental", "wall_s"), "s")
        row("incremental / full", ("incremental", "share_of_full_pct"), "%")
        row("scorecard flow time", ("scorecard", "flow_s"), "s")
        row("peak RSS pipeline (publish process + check workers)", ("rss", "pipeline_mib"), "MiB")
        row("peak RSS portal (Datasette process)", ("rss", "portal_mib"), "MiB")
        if lookup(size, ("load",)) is not None:
            for kind, what in (("json", "filtered JSON"), ("csv", "filtered CSV export")):
                for p in ("p50", "p95", "p99"):
                    row(f"portal {what} {p}", ("load", kind, f"{p}_ms"), "ms")
            row("portal requests/s (20 clients, mixed)", ("load", "requests_per_s"), "")
            row("portal load-test errors", ("load", "errors"), "")
    return out


def format_table(rows: Sequence[Mapping[str, str]]) -> str:
    heads = ("metric", "value", "target", "met?")
    keys = ("metric", "value", "target", "met")
    widths = [max([len(h)] + [len(r[k]) for r in rows]) for h, k in zip(heads, keys, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        cells = [r["metric"].ljust(widths[0]), r["value"].rjust(widths[1])]
        cells += [r["target"].ljust(widths[2]), r["met"].ljust(widths[3])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def summary_line(targets: Sequence[Mapping[str, Any]]) -> str:
    judged = [t for t in targets if t["met"] is not None]
    passed = sum(1 for t in judged if t["met"])
    missing = len(targets) - len(judged)
    return f"targets met: {passed} of {len(judged)} judged" + (
        f" ({missing} not measured in this run)" if missing else ""
    )
