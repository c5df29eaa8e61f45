"""``civicflow check`` for ``metrics/``: parse every file and cross-check it with the catalog.

A KPI that names a field its dataset does not publish (a typo, a dropped column) is
reported with its file, line and key; expressions and raw SQL are bound by DuckDB
against empty tables typed from the dataset specs, so a bad column inside SQL is
caught here too, before any data is read.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import duckdb

from civicflow.metrics.compile import compile_kpi, ident
from civicflow.metrics.loader import (
    ATTESTATIONS_FILE,
    CERTIFICATION_FILE,
    KPI_DIR,
    load_attestations,
    load_certification,
    load_kpi,
)
from civicflow.metrics.models import CertificationConfig, Kpi
from civicflow.settings import Settings
from civicflow.spec.errors import SpecError, SpecProblem
from civicflow.spec.loader import dataset_paths, load_dataset, read_yaml
from civicflow.spec.models import DatasetSpec

_SQL_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "TIMESTAMP",
    "datetime": "TIMESTAMP",
    "geopoint": "VARCHAR",
}
_NUMERIC = {"integer", "number"}
_VALUE_MEASURES = {"sum", "mean", "median", "percentile", "share_within"}


def _line(lines: dict[tuple[Any, ...], int], key: tuple[Any, ...]) -> int | None:
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return lines.get(())


def readable_catalog(settings: Settings) -> dict[str, DatasetSpec]:
    """Specs that load; broken ones are reported by the dataset check, not twice here."""
    specs: dict[str, DatasetSpec] = {}
    for path in dataset_paths(settings.datasets_dir):
        try:
            spec = load_dataset(path)
        except SpecError:
            continue
        specs[spec.id] = spec
    return specs


def published_type(spec: DatasetSpec, name: str) -> str:
    field = spec.field(name)
    if field.privacy is not None and field.privacy.rule == "hash":
        return "VARCHAR"
    return _SQL_TYPES[str(field.type)]


def empty_catalog(catalog: dict[str, DatasetSpec]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one empty table per dataset, typed like its published Parquet."""
    con = duckdb.connect()
    for spec in catalog.values():
        cols = ", ".join(
            f"{ident(f.name)} {published_type(spec, f.name)}" for f in spec.published_fields()
        )
        con.execute(f"CREATE TABLE {ident(spec.id)} ({cols})")
    # Checking a KPI runs its SQL: it gets the same sandbox as the scorecard (no files).
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _field_problem(spec: DatasetSpec, name: str) -> str | None:
    published = [f.name for f in spec.published_fields()]
    if name in published:
        return None
    if name in [f.name for f in spec.fields]:
        return f"field {name!r} of dataset {spec.id} is dropped by its privacy rule and never published"
    close = difflib.get_close_matches(name, published, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"dataset {spec.id} has no field {name!r}{hint}"


def kpi_problems(
    kpi: Kpi,
    path: Path,
    catalog: dict[str, DatasetSpec],
    con: duckdb.DuckDBPyConnection | None = None,
) -> list[SpecProblem]:
    """Cross-check one parsed KPI against the catalog (fields, types, lookups, SQL)."""
    _, lines = read_yaml(path)
    problems: list[SpecProblem] = []

    def add(key: tuple[Any, ...], message: str) -> None:
        problems.append(
            SpecProblem(path, ".".join(str(k) for k in key), message, _line(lines, key))
        )

    spec = catalog.get(kpi.dataset)
    if spec is None:
        add(
            ("dataset",),
            f"no dataset {kpi.dataset!r} in datasets/ (known: {', '.join(sorted(catalog)) or 'none'})",
        )
        return problems

    refs: list[tuple[tuple[Any, ...], str]] = [(("period", "column"), kpi.period.column)]
    refs += [(("filters", i, "column"), f.column) for i, f in enumerate(kpi.filters)]
    refs += [(("dimensions", i, "column"), d.column) for i, d in enumerate(kpi.dimensions)]
    if kpi.measure is not None:
        if kpi.measure.column is not None:
            refs.append((("measure", "column"), kpi.measure.column))
        refs += [
            (("measure", "where", i, "column"), f.column) for i, f in enumerate(kpi.measure.where)
        ]
    if kpi.still_open is not None:
        refs += [
            (("still_open", "where", i, "column"), f.column)
            for i, f in enumerate(kpi.still_open.where)
        ]
        refs += [
            (("still_open", "among", i, "column"), f.column)
            for i, f in enumerate(kpi.still_open.among or [])
        ]
    bad_refs = False
    for key, name in refs:
        message = _field_problem(spec, name)
        if message:
            add(key, message)
            bad_refs = True
    if not bad_refs:
        if spec.field(kpi.period.column).type not in ("date", "datetime"):
            add(
                ("period", "column"),
                f"field {kpi.period.column!r} is {spec.field(kpi.period.column).type}, not a date or datetime",
            )
        m = kpi.measure
        if (
            m is not None
            and m.column is not None
            and m.kind in _VALUE_MEASURES
            and spec.field(m.column).type not in _NUMERIC
        ):
            add(
                ("measure", "column"),
                f"measure {m.kind} needs a number field; {m.column!r} is {spec.field(m.column).type}",
            )

    for i, dim in enumerate(kpi.dimensions):
        lk = dim.lookup
        if lk is None:
            continue
        other = catalog.get(lk.dataset)
        if other is None:
            add(("dimensions", i, "lookup", "dataset"), f"no dataset {lk.dataset!r} in datasets/")
            bad_refs = True
            continue
        for attr in ("key", "label"):
            message = _field_problem(other, getattr(lk, attr))
            if message:
                add(("dimensions", i, "lookup", attr), message)
                bad_refs = True

    if bad_refs:
        return problems
    con = con or empty_catalog(catalog)
    if kpi.measure is not None and kpi.measure.expression is not None:
        try:
            con.execute(f"SELECT ({kpi.measure.expression}) FROM {ident(spec.id)} LIMIT 0")
        except duckdb.Error as exc:
            add(("measure", "expression"), f"DuckDB cannot use this expression: {_first_line(exc)}")
            return problems
    compiled = compile_kpi(kpi)
    try:
        rel = con.execute(compiled.sql, compiled.params)
        names = [d[0] for d in rel.description or []]
    except duckdb.Error as exc:
        add(
            ("sql",) if kpi.sql is not None else (),
            f"DuckDB cannot run the compiled query: {_first_line(exc)}",
        )
        return problems
    if compiled.open_sql:
        try:
            con.execute(compiled.open_sql, compiled.open_params)
        except duckdb.Error as exc:
            add(("still_open",), f"DuckDB cannot run the still-open query: {_first_line(exc)}")
    if tuple(names) != compiled.columns:
        add(("sql",), f"query must return {', '.join(compiled.columns)}; got {', '.join(names)}")
    return problems


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def certification_problems(
    cert: CertificationConfig, path: Path, catalog: dict[str, DatasetSpec]
) -> list[SpecProblem]:
    _, lines = read_yaml(path)
    problems = []
    for i, criterion in enumerate(cert.criteria):
        auto = criterion.auto
        if auto is not None and auto.check == "dataset_published" and auto.dataset not in catalog:
            key = ("criteria", i, "auto", "dataset")
            problems.append(
                SpecProblem(
                    path,
                    ".".join(map(str, key)),
                    f"no dataset {auto.dataset!r} in datasets/",
                    _line(lines, key),
                )
            )
    return problems


def check_files(settings: Settings) -> list[SpecProblem]:
    """Every problem in ``metrics/``: parse errors, unknown files and broken references."""
    metrics_dir = settings.metrics_dir
    problems: list[SpecProblem] = []
    known = {metrics_dir / CERTIFICATION_FILE, metrics_dir / ATTESTATIONS_FILE}
    for path in sorted(metrics_dir.rglob("*.yaml")) + sorted(metrics_dir.rglob("*.yml")):
        if path not in known and path.parent != metrics_dir / KPI_DIR:
            problems.append(
                SpecProblem(
                    path,
                    "",
                    f"not a metrics file civicflow reads (expected {KPI_DIR}/<id>.yaml, {CERTIFICATION_FILE} or {ATTESTATIONS_FILE})",
                )
            )
        elif path.suffix == ".yml":
            problems.append(SpecProblem(path, "", "use the .yaml extension"))

    catalog = readable_catalog(settings)
    con = empty_catalog(catalog)
    for path in sorted((metrics_dir / KPI_DIR).glob("*.yaml")):
        try:
            kpi = load_kpi(path)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        problems.extend(kpi_problems(kpi, path, catalog, con))

    cert_path = metrics_dir / CERTIFICATION_FILE
    cert: CertificationConfig | None = None
    try:
        cert = load_certification(metrics_dir)
    except SpecError as exc:
        problems.extend(exc.problems)
    if cert is not None:
        problems.extend(certification_problems(cert, cert_path, catalog))

    att_path = metrics_dir / ATTESTATIONS_FILE
    try:
        attestations = load_attestations(metrics_dir)
    except SpecError as exc:
        problems.extend(exc.problems)
    else:
        if cert is not None and attestations.attestations:
            attested = {c.id for c in cert.criteria if c.assessment == "attested"}
            _, lines = read_yaml(att_path)
            for i, att in enumerate(attestations.attestations):
                if att.criterion not in attested:
                    key = ("attestations", i, "criterion")
                    known_ids = ", ".join(sorted(attested)) or "none"
                    problems.append(
                        SpecProblem(
                            att_path,
                            ".".join(map(str, key)),
                            f"no attested criterion {att.criterion!r} in {CERTIFICATION_FILE} (attested: {known_ids})",
                            _line(lines, key),
                        )
                    )
    return problems
