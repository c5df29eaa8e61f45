"""Pydantic models of the files in ``metrics/``: KPIs, certification criteria, attestations.

Like dataset specs, every field carries a description (it becomes the published JSON
Schema) and unknown keys are errors, so a typo in a metric file fails loudly with
its file, line and key.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from civicflow.spec.models import SNAKE_CASE, Steward, StrictModel

Grain = Literal["day", "week", "month", "quarter", "year"]
Direction = Literal["lower_is_better", "higher_is_better"]
Scalar = str | int | float | bool


def _snake(value: str, what: str) -> str:
    if not SNAKE_CASE.match(value):
        raise ValueError(f"{what} {value!r} must be snake_case (a-z, 0-9, _)")
    return value


# -- KPIs ------------------------------------------------------------------------------


class Filter(StrictModel):
    """Keep only rows where ``column op value``; several filters all have to hold."""

    column: str = Field(description="Field of the source dataset (its published name).")
    op: Literal["eq", "ne", "in", "not_in", "lt", "le", "gt", "ge", "is_null", "not_null"] = Field(
        description="Comparison: eq, ne, in, not_in, lt, le, gt, ge, is_null, not_null."
    )
    value: Scalar | None = Field(None, description="Value compared with (eq, ne, lt, le, gt, ge).")
    values: list[Scalar] | None = Field(None, min_length=1, description="Values for in / not_in.")

    @field_validator("column")
    @classmethod
    def _column(cls, value: str) -> str:
        return _snake(value, "column")

    @model_validator(mode="after")
    def _operands(self) -> Filter:
        if self.op in ("in", "not_in"):
            if self.values is None or self.value is not None:
                raise ValueError(f"op {self.op} takes values (a list), not value")
        elif self.op in ("is_null", "not_null"):
            if self.values is not None or self.value is not None:
                raise ValueError(f"op {self.op} takes neither value nor values")
        elif self.value is None or self.values is not None:
            raise ValueError(f"op {self.op} takes value (one scalar), not values")
        return self


MeasureKind = Literal[
    "count", "count_distinct", "sum", "mean", "median", "percentile", "share_within", "share_where"
]


class Measure(StrictModel):
    """What is computed for each period and group."""

    kind: MeasureKind = Field(
        description=(
            "count: rows (or non-null values of column); count_distinct; sum; mean; median; "
            "percentile; share_within: percent of rows whose value is at most threshold; "
            "share_where: percent of rows matching the where filters."
        )
    )
    column: str | None = Field(None, description="Field the measure is taken over.")
    expression: str | None = Field(
        None,
        description=(
            "DuckDB SQL expression over the dataset's fields, instead of column "
            "(e.g. date_diff('second', created_date, closed_date) / 86400.0 for days to close)."
        ),
    )
    percentile: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="For percentile: the fraction, e.g. 0.9 for the 90th percentile.",
    )
    threshold: float | None = Field(
        None,
        description="For share_within: the largest value that counts as within target (in the value's unit).",
    )
    missing: Literal["exclude", "outside"] = Field(
        "outside",
        description="For share_within: rows with no value (e.g. requests not closed yet) count as outside the target, or are left out.",
    )
    where: list[Filter] = Field(
        default_factory=list, description="For share_where: the rows counted in the numerator."
    )

    @field_validator("column")
    @classmethod
    def _column_name(cls, value: str | None) -> str | None:
        return None if value is None else _snake(value, "column")

    @model_validator(mode="after")
    def _operands(self) -> Measure:
        if self.column is not None and self.expression is not None:
            raise ValueError("give column or expression, not both")
        needs_value = self.kind in (
            "count_distinct",
            "sum",
            "mean",
            "median",
            "percentile",
            "share_within",
        )
        if needs_value and self.column is None and self.expression is None:
            raise ValueError(f"measure {self.kind} needs a column or an expression")
        if self.kind == "share_where" and not self.where:
            raise ValueError("measure share_where needs where filters (the rows counted)")
        if self.kind != "share_where" and self.where:
            raise ValueError("where only applies to share_where (use the KPI's filters instead)")
        if (self.kind == "percentile") != (self.percentile is not None):
            raise ValueError("percentile is required for, and only for, measure percentile")
        if (self.kind == "share_within") != (self.threshold is not None):
            raise ValueError("threshold is required for, and only for, measure share_within")
        return self


class Period(StrictModel):
    """How rows are bucketed in time; the latest bucket in the data is the reporting period."""

    column: str = Field(description="Date or datetime field the period is taken from.")
    grain: Grain = Field(description="day, week, month, quarter or year.")

    @field_validator("column")
    @classmethod
    def _column(cls, value: str) -> str:
        return _snake(value, "column")


class Lookup(StrictModel):
    """Names for a coded dimension, read from another published dataset."""

    dataset: str = Field(description="Dataset id holding the names (e.g. neighborhood_councils).")
    key: str = Field(
        description="Field of that dataset matching the dimension's values (e.g. nc_id)."
    )
    label: str = Field(description="Field of that dataset shown as the group's name (e.g. name).")

    @field_validator("dataset", "key", "label")
    @classmethod
    def _names(cls, value: str) -> str:
        return _snake(value, "name")


class Dimension(StrictModel):
    """A breakdown of the KPI (a chart and table by group for the reporting period)."""

    column: str = Field(
        description="Field whose values are the groups (e.g. cd for council district)."
    )
    title: str = Field(
        min_length=2, description="Heading for the breakdown, e.g. 'By council district'."
    )
    title_es: str | None = Field(
        None,
        min_length=2,
        description="Spanish heading for the scorecard in Spanish, e.g. 'Por distrito del concejo' (English is shown without).",
    )
    equity: bool = Field(
        False,
        description="True when the groups are communities (council districts, neighborhoods) so the breakdown shows who is served worse.",
    )
    lookup: Lookup | None = Field(
        None, description="Read group names from another dataset instead of showing codes."
    )
    group_prefix: str | None = Field(
        None,
        description="Text put before a code that has no name, e.g. 'CD ' for council districts.",
    )
    max_bars: int | None = Field(
        None,
        ge=3,
        description="Chart at most this many groups (largest values first); the table always lists all.",
    )

    @field_validator("column")
    @classmethod
    def _column(cls, value: str) -> str:
        return _snake(value, "column")


class Target(StrictModel):
    """The value the KPI is held to, and where that commitment comes from."""

    value: float = Field(description="Target value, in the KPI's unit.")
    direction: Direction = Field(
        description="lower_is_better: on track at or below the target; higher_is_better: at or above it."
    )
    source: str = Field(
        min_length=10,
        description="Where the target comes from (policy, budget book, service-level agreement) and whether it is adopted or illustrative.",
    )
    source_es: str | None = Field(
        None,
        min_length=10,
        description="Where the target comes from, in Spanish, for the scorecard in Spanish (English is shown without).",
    )


class StillOpen(StrictModel):
    """Records of a period that are still in progress (e.g. requests not closed yet).

    On a live feed the latest day is mostly open: a time-to-close measure then counts
    only the fast ones. A period with more than ``max_share`` percent still open is
    provisional: the share is shown and the value is not compared with the target.
    """

    where: list[Filter] = Field(
        min_length=1,
        description="A record is still open when all of these hold (e.g. closed_date is_null).",
    )
    among: list[Filter] | None = Field(
        None,
        description=(
            "Records the share is taken over (default: the KPI's filters). Give it when the "
            "filters keep only finished records (e.g. status eq Closed)."
        ),
    )
    max_share: float = Field(
        50.0,
        ge=0,
        lt=100,
        description="Percent of a period's records that may be open before the period is provisional.",
    )


class Kpi(StrictModel):
    """One performance metric computed from published data (``metrics/kpis/<id>.yaml``)."""

    id: str = Field(description="snake_case identifier; must match the file name.")
    title: str = Field(min_length=3, description="Short title shown to leadership.")
    title_es: str | None = Field(
        None,
        min_length=3,
        description="Spanish title for the scorecard in Spanish (English is shown, with a note, without).",
    )
    description: str = Field(min_length=20, description="What the number means, in plain language.")
    description_es: str | None = Field(
        None,
        min_length=20,
        description="Spanish description for the scorecard in Spanish (falls back to English, with a note).",
    )
    department: str = Field(description="Department accountable for the result.")
    owner: Steward = Field(description="Person or role who answers for the KPI.")
    dataset: str = Field(
        description="Dataset id the KPI is computed from (its latest published version)."
    )
    measure: Measure | None = Field(
        None, description="Declarative measure; compiled to DuckDB SQL."
    )
    sql: str | None = Field(
        None,
        description=(
            "Raw DuckDB SQL for what the declarative form cannot say, instead of measure. Datasets "
            "are tables named by id. It must return period (date), dimension (text: a dimension's "
            "column, or null for the overall value), group_key (text), group_label (text), value "
            "(number) and n (records behind the value)."
        ),
    )
    filters: list[Filter] = Field(
        default_factory=list, description="Rows kept before measuring (all must hold)."
    )
    period: Period = Field(
        description="Time bucketing; the reporting period is the latest one in the dataset."
    )
    dimensions: list[Dimension] = Field(
        default_factory=list,
        description="Breakdowns (council district, neighborhood council, type, ...).",
    )
    unit: str = Field(description="Unit of the value as shown, e.g. days, %, requests, passengers.")
    unit_es: str | None = Field(
        None,
        description="Spanish unit for the scorecard in Spanish, e.g. días (not needed for a symbol such as %).",
    )
    decimals: int = Field(1, ge=0, le=4, description="Decimals shown.")
    target: Target | None = Field(
        None, description="Target and direction; without one the KPI shows no on/off-track status."
    )
    still_open: StillOpen | None = Field(
        None,
        description=(
            "How to tell records still in progress; periods mostly open are marked provisional "
            "rather than on or off track."
        ),
    )
    min_records: int | None = Field(
        None,
        ge=1,
        description=(
            "Values computed from fewer records than this are suppressed (default: the "
            "performance_metrics dataset's small-count threshold). 1 turns suppression off, "
            "for totals that are not about people (e.g. airport passenger counts)."
        ),
    )

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _snake(value, "id")

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        return _snake(value, "dataset")

    @model_validator(mode="after")
    def _one_definition(self) -> Kpi:
        if (self.measure is None) == (self.sql is None):
            raise ValueError("give exactly one of measure (declarative) or sql (raw)")
        if self.sql is not None and self.filters:
            raise ValueError("filters apply to measure; put them in the sql instead")
        columns = [d.column for d in self.dimensions]
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if dupes:
            raise ValueError(f"duplicate dimensions: {', '.join(dupes)}")
        return self

    @property
    def equity_dimensions(self) -> list[Dimension]:
        return [d for d in self.dimensions if d.equity]


# -- certification -----------------------------------------------------------------------


class StandardRef(StrictModel):
    """The What Works Cities criterion this one corresponds to, where one does."""

    code: str = Field(
        description="The standard's own code for the criterion, e.g. DG1 (only codes found in the published standard)."
    )
    edition: str = Field(description="Edition of the standard the code is from, e.g. 2018.")
    title: str = Field(description="The criterion's title in that edition.")


class _Check(StrictModel):
    min_share: float = Field(
        100.0,
        ge=0,
        le=100,
        description="Percent of items that must pass for the criterion to be met.",
    )


class DepartmentsPublishing(_Check):
    """Share of departments in the catalog with at least one published dataset."""

    check: Literal["departments_publishing"] = Field(description="Auto check name.")


class MetadataComplete(_Check):
    """Share of datasets whose metadata is complete (DCAT-US fields, Portal Watch dimensions)."""

    check: Literal["metadata_complete"] = Field(description="Auto check name.")
    min_score: float = Field(
        100.0,
        ge=0,
        le=100,
        description="Percent a dataset must score on the existence, conformance and openness dimensions (each) to count.",
    )


class Timeliness(_Check):
    """Share of datasets refreshed within their declared update frequency."""

    check: Literal["timeliness"] = Field(description="Auto check name.")
    grace: float = Field(
        1.5,
        ge=1,
        description=(
            "A dataset is late once its latest record (the spec's record_date, read from the "
            "published data) is older than its frequency times this factor."
        ),
    )


class RunsPassing(_Check):
    """Share of recent runs that passed every critical check."""

    check: Literal["runs_passing"] = Field(description="Auto check name.")
    window_days: int = Field(90, ge=1, description="Runs started within this many days count.")


class PrivacyClean(_Check):
    """Published datasets with a privacy review and a clean scan on their last publishing run."""

    check: Literal["privacy_clean"] = Field(description="Auto check name.")


class DataDictionary(_Check):
    """Published datasets whose every published column is described in the spec."""

    check: Literal["data_dictionary"] = Field(description="Auto check name.")
    min_description: int = Field(
        10,
        ge=1,
        description="Shortest description (characters) that counts as documenting a column.",
    )


class KpiEquity(_Check):
    """Share of KPIs with at least one equity dimension."""

    check: Literal["kpi_equity"] = Field(description="Auto check name.")


class KpiTargets(_Check):
    """Share of KPIs with a target, a direction and the target's source."""

    check: Literal["kpi_targets"] = Field(description="Auto check name.")


class KpiCurrent(_Check):
    """Share of KPIs with a value computed from current published data this run."""

    check: Literal["kpi_current"] = Field(description="Auto check name.")


class DatasetPublished(_Check):
    """A named dataset has a published version (e.g. the performance metrics themselves)."""

    check: Literal["dataset_published"] = Field(description="Auto check name.")
    dataset: str = Field(description="Dataset id that must be published.")


AutoCheck = Annotated[
    DepartmentsPublishing
    | MetadataComplete
    | Timeliness
    | RunsPassing
    | PrivacyClean
    | DataDictionary
    | KpiEquity
    | KpiTargets
    | KpiCurrent
    | DatasetPublished,
    Field(discriminator="check"),
]


class Criterion(StrictModel):
    """One certification criterion and how it is assessed."""

    id: str = Field(description="snake_case identifier (attestations refer to it).")
    practice: str = Field(
        description="Foundational practice of the standard, e.g. Data Management, Open Data, Performance & Analytics."
    )
    practice_es: str | None = Field(
        None, description="Spanish name of the practice for the scorecard in Spanish."
    )
    practice_area: str | None = Field(
        None,
        description="The practice's sub-area, e.g. Protecting Data Privacy and Confidentiality.",
    )
    practice_area_es: str | None = Field(
        None, description="Spanish name of the practice area for the scorecard in Spanish."
    )
    standard: StandardRef | None = Field(
        None,
        description="The standard's code for the corresponding criterion, only where one was found.",
    )
    text: str = Field(min_length=10, description="What the city must do, in plain language.")
    text_es: str | None = Field(
        None,
        min_length=10,
        description="Spanish text for the scorecard in Spanish (falls back to English, with a note).",
    )
    weight: float = Field(
        1.0, gt=0, description="Weight when scoring is weighted (ignored when counted)."
    )
    assessment: Literal["auto", "attested"] = Field(
        description="auto: computed from catalog, ledger and published data; attested: needs a current attestation."
    )
    auto: AutoCheck | None = Field(None, description="For auto: which check and its thresholds.")
    evidence_hint: str | None = Field(
        None, description="For attested: what evidence an attestation must link to."
    )

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _snake(value, "id")

    @model_validator(mode="after")
    def _assessment(self) -> Criterion:
        if self.assessment == "auto" and self.auto is None:
            raise ValueError("assessment auto needs an auto check")
        if self.assessment == "attested" and self.auto is not None:
            raise ValueError(
                "assessment attested takes no auto check (it is met by attestations.yaml)"
            )
        return self


class Level(StrictModel):
    """A certification level and the share of criteria it needs."""

    name: str = Field(description="Level name, e.g. Silver.")
    name_es: str | None = Field(
        None, description="Spanish level name for the scorecard in Spanish, e.g. Plata."
    )
    min_percent: float = Field(
        gt=0, le=100, description="Percent of criteria (or of weight) met needed for this level."
    )


class CertificationConfig(StrictModel):
    """``metrics/certification.yaml``: the criteria, how they are scored and the levels."""

    standard: str = Field(description="Standard the criteria are modelled on, with edition.")
    standard_es: str | None = Field(
        None, description="The standard in Spanish, for the scorecard in Spanish."
    )
    scoring: Literal["counted", "weighted"] = Field(
        "counted",
        description="counted: every criterion is one point; weighted: criteria count by weight.",
    )
    below_levels: str = Field(
        "Not yet certified", description="What the result is called below the lowest level."
    )
    below_levels_es: str | None = Field(
        None,
        description="Spanish for below_levels (default: the scorecard's own Spanish for 'Not yet certified').",
    )
    levels: list[Level] = Field(min_length=1, description="Levels, lowest first.")
    criteria: list[Criterion] = Field(min_length=1, description="The criteria.")

    @model_validator(mode="after")
    def _consistent(self) -> CertificationConfig:
        thresholds = [lv.min_percent for lv in self.levels]
        if thresholds != sorted(thresholds) or len(set(thresholds)) != len(thresholds):
            raise ValueError("levels must be listed lowest first with increasing min_percent")
        ids = [c.id for c in self.criteria]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate criterion ids: {', '.join(dupes)}")
        return self


class Attestation(StrictModel):
    """A named person's statement, with evidence, that an attested criterion is met."""

    criterion: str = Field(description="Id of the attested criterion in certification.yaml.")
    evidence_url: str = Field(
        pattern=r"^https?://\S+$",
        description="Where the evidence can be read (policy, minutes, page).",
    )
    attested_by: str = Field(min_length=3, description="Who attests (name and role).")
    date: dt.date = Field(description="Date attested (YYYY-MM-DD).")
    expires: dt.date = Field(
        description="Date after which the attestation no longer counts (YYYY-MM-DD); expired means unmet."
    )
    notes: str | None = Field(None, description="What the evidence shows.")
    sample: bool = Field(
        False,
        description=(
            "True for a sample shipped with the demonstration: it counts for nothing (nor does "
            "one whose evidence_url is at a reserved placeholder host such as *.example)."
        ),
    )

    @model_validator(mode="after")
    def _dates(self) -> Attestation:
        if self.expires <= self.date:
            raise ValueError("expires must be after date")
        return self


class AttestationsFile(StrictModel):
    """``metrics/attestations.yaml``: the current attestations."""

    attestations: list[Attestation] = Field(
        default_factory=list, description="Attestations, any order."
    )
