"""The privacy stage: check the spec is protectable, apply the rules, scan, report."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from civicflow.privacy.consistency import (
    Level,
    consistency_hits,
    finest_locations,
    location_decimals,
)
from civicflow.privacy.detectors import as_text, detector_names
from civicflow.privacy.errors import PrivacyError
from civicflow.privacy.generalise import ACCEPTS, GENERALISERS, INVALID
from civicflow.privacy.keys import HashKey, require_hash_key
from civicflow.privacy.report import (
    INVALID_VALUE,
    MAX_EXAMPLES,
    Allowance,
    Finding,
    PrivacyReport,
    RuleApplied,
)
from civicflow.privacy.rules import RULES, RuleContext, redact_detectors, suppress_small_counts
from civicflow.privacy.scan import scan
from civicflow.settings import Settings
from civicflow.spec.models import DatasetSpec, FieldSpec, FieldType


@dataclass
class ProtectResult:
    frame: pd.DataFrame  # only published fields, in spec order, index = data row number
    report: PrivacyReport
    #: the finest location each published location column gives, finest first
    levels: list[Level]


def published_type(field: FieldSpec) -> str:
    """The type a field has once protected: hashes and age bands are text."""
    rule = field.privacy
    if rule and (rule.rule == "hash" or rule.method == "age_band"):
        return FieldType.string.value
    return str(field.type)


def _spec_problems(spec: DatasetSpec) -> list[str]:
    problems: list[str] = []
    known = set(detector_names())
    for f in spec.fields:
        rule = f.privacy
        if rule is not None:
            if rule.rule not in RULES:
                problems.append(
                    f"field {f.name}: no privacy rule {rule.rule!r} (registered: {', '.join(sorted(RULES))})"
                )
            elif rule.rule == "generalise":
                method = str(rule.method)
                if method not in GENERALISERS:
                    problems.append(f"field {f.name}: no generalise method {method!r}")
                elif str(f.type) not in ACCEPTS[method]:
                    problems.append(
                        f"field {f.name}: generalise/{method} needs a {' or '.join(ACCEPTS[method])} field, not {f.type}"
                    )
            elif rule.rule == "redact":
                if str(f.type) != "string":
                    problems.append(f"field {f.name}: redact works on string fields, not {f.type}")
                try:
                    redact_detectors(rule.detectors)
                except PrivacyError as exc:
                    problems.append(f"field {f.name}: {exc}")
        for allow in f.pii_allow:
            if allow.detector not in known:
                problems.append(
                    f"field {f.name}: pii_allow names unknown detector {allow.detector!r} (known: {', '.join(sorted(known))})"
                )
        if f.pii_allow and rule is not None and rule.rule == "drop":
            problems.append(
                f"field {f.name}: is dropped, so its pii_allow can never apply (remove one of them)"
            )
    for col in spec.privacy.small_count_columns:
        if str(spec.field(col).type) not in ("integer", "number"):
            problems.append(
                f"privacy.small_count_columns: {col} is {spec.field(col).type}, not a count"
            )
    return problems


def _hashed_fields(spec: DatasetSpec) -> list[str]:
    return [f.name for f in spec.fields if f.privacy and f.privacy.rule == "hash"]


def spec_hash_key(spec: DatasetSpec, settings: Settings) -> HashKey | None:
    """The HMAC key the spec's ``hash`` rules need (None when it has none); PrivacyError
    naming the fields when it is not set."""
    hashed = _hashed_fields(spec)
    return require_hash_key(settings, hashed) if hashed else None


def check_ready(spec: DatasetSpec, settings: Settings) -> None:
    """Refuse before any work if the spec cannot be protected (no key, unknown names, wrong types)."""
    problems = _spec_problems(spec)
    if problems:
        raise PrivacyError(f"dataset {spec.id}: privacy rules cannot run: " + "; ".join(problems))
    hashed = _hashed_fields(spec)
    if hashed:
        require_hash_key(settings, hashed)


def _changed(before: pd.Series, after: pd.Series) -> int:
    b, a = as_text(before), as_text(after)
    same = pc.fill_null(pc.equal(b, a), False)
    both_null = pc.and_(pc.is_null(b), pc.is_null(a))
    return int(
        np.count_nonzero(
            ~np.asarray(pc.or_(same, both_null).to_numpy(zero_copy_only=False), dtype=bool)
        )
    )


def protect(
    spec: DatasetSpec, frame: pd.DataFrame, settings: Settings, *, hash_key: HashKey | None = None
) -> ProtectResult:
    """Apply every field's rule, suppress small counts, scan what will be published."""
    problems = _spec_problems(spec)
    if problems:
        raise PrivacyError(f"dataset {spec.id}: privacy rules cannot run: " + "; ".join(problems))
    missing = [f.name for f in spec.fields if f.name not in frame.columns]
    if missing:
        raise PrivacyError(f"dataset {spec.id}: the frame has no column(s) {', '.join(missing)}")
    key = hash_key or spec_hash_key(spec, settings)
    ctx = RuleContext(frame=frame, hash_key=key)
    report = PrivacyReport(
        dataset_id=spec.id,
        rows=len(frame),
        published_columns=[f.name for f in spec.published_fields()],
    )

    columns: dict[str, pd.Series] = {}
    invalid: list[Finding] = []
    for f in spec.fields:
        values = frame[f.name]
        rule = f.privacy
        if rule is None:
            columns[f.name] = values
            continue
        out = RULES[rule.rule](values, f, ctx)
        invalid.extend(_invalid_values(spec.id, f, values))
        non_null = int(values.notna().sum())
        changed = non_null if rule.rule == "drop" else _changed(values, out)
        report.rules.append(
            RuleApplied(f.name, rule.rule, rule.reason, changed, non_null, rule.method)
        )
        columns[f.name] = out

    if spec.privacy.small_count_columns:
        report.suppression_threshold = spec.privacy.small_count_threshold
        for col in spec.privacy.small_count_columns:
            before = columns[col]
            columns[col] = suppress_small_counts(before, spec.privacy.small_count_threshold)
            reason = f"aggregate counts below {spec.privacy.small_count_threshold} could single out people"
            report.rules.append(
                RuleApplied(
                    col,
                    "suppress_small_counts",
                    reason,
                    _changed(before, columns[col]),
                    int(before.notna().sum()),
                )
            )

    published = pd.DataFrame(
        {name: columns[name] for name in report.published_columns}, index=frame.index
    )

    started = time.perf_counter()
    decimals = location_decimals(spec, published)
    findings = scan(spec, published, decimals) + consistency_findings(spec, published, decimals)
    report.scan_seconds = round(time.perf_counter() - started, 4)
    levels = finest_locations(spec, published, decimals)
    report.finest_location = [lv.describe() for lv in levels]
    report.allowances = allow_findings(spec, findings)
    report.findings = invalid + findings
    return ProtectResult(frame=published, report=report, levels=levels)


def allow_findings(spec: DatasetSpec, findings: list[Finding]) -> list[Allowance]:
    """Mark the findings a ``pii_allow`` lets through; one Allowance per written one,
    with the rows it let through."""
    allowances = []
    for f in spec.published_fields():
        for allow in f.pii_allow:
            matched = [x for x in findings if x.column == f.name and x.detector == allow.detector]
            for x in matched:
                x.allowed, x.reason = True, allow.reason
            allowances.append(
                Allowance(f.name, allow.detector, allow.reason, sum(x.count for x in matched))
            )
    return allowances


def consistency_findings(
    spec: DatasetSpec, published: pd.DataFrame, decimals: dict[str, np.ndarray] | None = None
) -> list[Finding]:
    """Location columns finer than the location the dataset generalises to."""
    rows = published.index.to_numpy()
    return [
        Finding(
            dataset=spec.id,
            column=column,
            detector=hit.detector,
            count=int(hit.mask.sum()),
            example_rows=[int(r) for r in rows[np.flatnonzero(hit.mask)[:MAX_EXAMPLES]]],
            examples=hit.examples,
        )
        for column, hit in consistency_hits(spec, published, decimals).items()
    ]


def _invalid_values(dataset: str, field: FieldSpec, values: pd.Series) -> list[Finding]:
    """Values the field's generalise method cannot protect, as a blocking finding."""
    rule = field.privacy
    check = INVALID.get(str(rule.method)) if rule and rule.rule == "generalise" else None
    bad = check(values) if check else np.zeros(0, dtype=bool)
    if not bad.any():
        return []
    rows = values.index.to_numpy()[np.flatnonzero(bad)]
    return [
        Finding(
            dataset=dataset,
            column=field.name,
            detector=INVALID_VALUE,
            count=int(bad.sum()),
            example_rows=[int(r) for r in rows[:MAX_EXAMPLES]],
            examples=[],
        )
    ]
