"""Pydantic models of a dataset spec: one YAML file per dataset in ``datasets/``.

Every field carries a description (it becomes the JSON Schema editors use) and
unknown keys are errors, so a typo in a steward's YAML fails loudly.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]*$")


class StrictModel(BaseModel):
    """Base for every spec model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True)


class FieldType(StrEnum):
    """Types a dataset field can be declared as (Table Schema names)."""

    string = "string"
    integer = "integer"
    number = "number"
    boolean = "boolean"
    date = "date"
    datetime = "datetime"
    geopoint = "geopoint"


class UpdateFrequency(StrEnum):
    """How often a dataset is refreshed (drives the timeliness criterion)."""

    daily = "daily"
    weekly = "weekly"
    monthly = "monthly"
    quarterly = "quarterly"
    annually = "annually"
    irregular = "irregular"
    static = "static"


class Semantic(StrEnum):
    """What a column holds, where the privacy scan needs to know it is declared as such."""

    address = "address"
    latitude = "latitude"
    longitude = "longitude"
    geopoint = "geopoint"
    zip_code = "zip_code"
    free_text = "free_text"
    identifier = "identifier"
    birth_date = "birth_date"


class Constraints(StrictModel):
    """Table Schema constraints checked on every row by the structure check."""

    enum: list[str | int | float] | None = Field(
        None, description="Allowed values; anything else is a constraint error."
    )
    minimum: float | None = Field(None, description="Smallest allowed value (numbers, integers).")
    maximum: float | None = Field(None, description="Largest allowed value (numbers, integers).")
    pattern: str | None = Field(
        None, description="Regular expression every non-empty value must fully match."
    )
    min_length: int | None = Field(None, ge=0, description="Shortest allowed string length.")
    max_length: int | None = Field(None, ge=0, description="Longest allowed string length.")
    unique: bool = Field(False, description="Every non-empty value must be distinct.")

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from exc
        return value


PrivacyRuleName = Literal["drop", "hash", "generalise", "redact"]
#: text detectors ``redact`` can apply (civicflow.privacy.detectors.DETECTORS; a test keeps them equal)
TextDetectorName = Literal["card", "email", "person_name", "phone", "ssn", "street_address", "vin"]
#: every scan detector a ``pii_allow`` can name: the text ones and the scan-only checks
DetectorName = Literal[
    "birth_date",
    "card",
    "coordinate",
    "email",
    "finer_location",
    "person_name",
    "phone",
    "ssn",
    "street_address",
    "vin",
]
GeneraliseMethod = Literal["hundred_block", "round", "grid", "truncate", "age_band", "zip5"]


class PrivacyRule(StrictModel):
    """A privacy rule applied to one column after validation and before publishing."""

    rule: PrivacyRuleName = Field(
        description="drop: never leaves the extract; hash: keyed HMAC-SHA256; generalise: coarsen; redact: replace PII found in free text."
    )
    reason: str = Field(
        min_length=3,
        description="Why this rule was chosen, in a steward's words (shown in the privacy report).",
    )
    method: GeneraliseMethod | None = Field(
        None, description="For generalise: hundred_block, round, grid, truncate, age_band or zip5."
    )
    decimals: int | None = Field(
        None,
        ge=0,
        le=10,
        description="For generalise/round: decimals kept on coordinates (0-10, like a field's precision).",
    )
    grid_size: float | None = Field(
        None,
        gt=0,
        description="For generalise/grid: snap coordinates to a grid of this many degrees.",
    )
    truncate_to: Literal["hour", "day", "month", "year"] | None = Field(
        None,
        description="For generalise/truncate: the timestamp unit kept (a birth date may keep the year only).",
    )
    band_width: int | None = Field(
        None, gt=0, description="For generalise/age_band: width of each age band in years."
    )
    detectors: list[TextDetectorName] | None = Field(
        None, description="For redact: which detectors to apply (default: all of them)."
    )
    redact_values_of: list[str] = Field(
        default_factory=list,
        description="For redact: other fields (usually dropped ones, e.g. a complainant's name) whose value in the same row is also replaced wherever it appears in this text, whole and word by word.",
    )

    @model_validator(mode="after")
    def _method_matches_rule(self) -> PrivacyRule:
        if self.rule == "generalise" and self.method is None:
            raise ValueError(
                "generalise needs a method (hundred_block, round, grid, truncate, age_band, zip5)"
            )
        if self.rule != "generalise" and self.method is not None:
            raise ValueError(f"method only applies to generalise, not {self.rule}")
        # Each generalise method needs its own parameter; a missing one would silently do nothing.
        needs = {
            "round": "decimals",
            "grid": "grid_size",
            "truncate": "truncate_to",
            "age_band": "band_width",
        }
        if self.method in needs and getattr(self, needs[self.method]) is None:
            raise ValueError(f"generalise/{self.method} needs {needs[self.method]}")
        for key, value in (
            ("decimals", self.decimals),
            ("grid_size", self.grid_size),
            ("truncate_to", self.truncate_to),
            ("band_width", self.band_width),
        ):
            if value is not None and needs.get(self.method or "") != key:
                raise ValueError(
                    f"{key} only applies to generalise/{[m for m, k in needs.items() if k == key][0]}"
                )
        if self.rule != "redact" and (self.detectors is not None or self.redact_values_of):
            raise ValueError(
                f"detectors and redact_values_of only apply to redact, not {self.rule}"
            )
        return self


class PiiAllowance(StrictModel):
    """A written exception: this column may carry what one scan detector finds."""

    detector: DetectorName = Field(
        description="Name of the PII detector whose findings are allowed in this column."
    )
    reason: str = Field(
        min_length=10,
        description="Why publishing this is acceptable; shown in the report and the published metadata.",
    )


class FieldSpec(StrictModel):
    """One column of the published dataset."""

    name: str = Field(description="Column name on the portal (snake_case).")
    source: str | None = Field(
        None,
        description="Header of the column in the source file, if it differs from name (a rename).",
    )
    type: FieldType = Field(description="Declared type; values that do not parse are type errors.")
    description: str = Field(
        min_length=3, description="What the column means, for the data dictionary."
    )
    nullable: bool = Field(
        True, description="Whether empty values are allowed (false makes the column required)."
    )
    formats: list[str] | None = Field(
        None,
        description="strptime formats for date/datetime values, tried in order (default: the source's timestamp_formats).",
    )
    constraints: Constraints | None = Field(
        None, description="Table Schema constraints on the values."
    )
    unit: str | None = Field(None, description="Unit of measure, for the data dictionary.")
    semantic: Semantic | None = Field(
        None,
        description="What the column holds, declared so the PII scan knows it is expected (address, latitude, ...).",
    )
    precision: int | None = Field(
        None,
        ge=0,
        le=10,
        description="Decimals published coordinates may carry: required for latitude, longitude and geopoint columns; in other columns it bounds coordinates written in the text (pairs, WKT; default 3, about 100 m).",
    )
    privacy: PrivacyRule | None = Field(None, description="Privacy rule applied before publishing.")
    pii_allow: list[PiiAllowance] = Field(
        default_factory=list,
        description="Scan findings allowed in this column, each with a reason.",
    )
    index: bool | list[str] = Field(
        False,
        description=(
            "Residents filter and facet on this column: the portal indexes it, so those "
            "queries and facet counts do not scan the whole table. true indexes the "
            "column alone; a list of other field names indexes this column followed by "
            "them, for filters that combine them (request_type with [cd] serves "
            "request_type=X alone and together with cd=Y). Each index makes a publish "
            "a little slower and the portal database a little bigger."
        ),
    )

    @field_validator("name")
    @classmethod
    def _snake(cls, value: str) -> str:
        if not SNAKE_CASE.match(value):
            raise ValueError(f"field name {value!r} must be snake_case (a-z, 0-9, _)")
        return value

    @model_validator(mode="after")
    def _coordinates_declare_precision(self) -> FieldSpec:
        # The privacy scan holds coordinates to this; without it a column would be unchecked.
        if self.semantic in ("latitude", "longitude", "geopoint") and self.precision is None:
            raise ValueError(
                f"field {self.name}: semantic {self.semantic} needs a precision (decimals published; 3 is about 100 m)"
            )
        return self

    @property
    def source_name(self) -> str:
        return self.source or self.name


#: a Socrata dataset id ("four-by-four"): https://dev.socrata.com/docs/endpoints/
FOUR_BY_FOUR = r"^[a-z0-9]{4}-[a-z0-9]{4}$"
_SOCRATA_FIELD = re.compile(r"^:?[a-z_][a-z0-9_]*$")
_ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def _default_timestamp_formats() -> list[str]:
    return ["%m/%d/%Y %I:%M:%S %p", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]


class TabularSource(StrictModel):
    """Options shared by every source read as rows of text (CSV, Excel, PostgreSQL, HTTP)."""

    timestamp_formats: list[str] = Field(
        default_factory=_default_timestamp_formats,
        description="strptime formats tried for date/datetime fields that give none of their own.",
    )
    null_values: list[str] = Field(
        default_factory=lambda: [""], description="Strings read as null."
    )


class CsvSource(TabularSource):
    """A CSV drop from a department."""

    kind: Literal["csv"] = Field(description="Source kind.")
    path: str = Field(description="Path of the file, relative to the project folder.")
    encoding: str = Field(
        "utf-8", description="Text encoding of the file; anything that does not decode is rejected."
    )
    delimiter: str = Field(",", min_length=1, max_length=1, description="Field delimiter.")


class ExcelSource(TabularSource):
    """One sheet of an Excel workbook (.xlsx) mailed by a department."""

    kind: Literal["excel"] = Field(description="Source kind.")
    path: str = Field(description="Path of the workbook, relative to the project folder.")
    sheet: str = Field(min_length=1, description="Name of the sheet to read (not its position).")
    header_row: int = Field(
        1,
        ge=1,
        description="1-based row holding the column headers; rows above it (titles) are skipped.",
    )
    footer_rows: int = Field(
        0, ge=0, description="Rows at the bottom of the sheet to skip (totals, notes)."
    )


class PostgresSource(TabularSource):
    """A table or query in a department's PostgreSQL database, read in a read-only transaction.

    Connection settings and the password are never in the spec: the environment
    variable ``connection_env`` names holds a libpq URL or keyword string without a
    password; the password from ``password_env`` (flows fill both from Prefect Secret
    blocks of the same name in kebab case when the environment lacks them).
    """

    kind: Literal["postgres"] = Field(description="Source kind.")
    table: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$",
        description="Table (or schema.table) to read in full; give this or query.",
    )
    query: str | None = Field(
        None, min_length=8, description="A SELECT whose rows are the dataset; give this or table."
    )
    connection_env: str = Field(
        "CIVICFLOW_POSTGRES_URL",
        pattern=_ENV_NAME,
        description="Name of the environment variable holding the connection URL (no password in it).",
    )
    password_env: str = Field(
        "CIVICFLOW_POSTGRES_PASSWORD",
        pattern=_ENV_NAME,
        description="Name of the environment variable holding the password (never the password itself).",
    )
    statement_timeout_s: int = Field(
        900, ge=1, description="Server-side statement timeout for the extract, in seconds."
    )

    @model_validator(mode="after")
    def _table_or_query(self) -> PostgresSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        return self


class HttpSource(TabularSource):
    """A CSV, JSON or GeoJSON file behind a URL, downloaded again only when it changed."""

    kind: Literal["http"] = Field(description="Source kind.")
    url: str = Field(
        pattern=r"^https?://",
        description="Where the file is; plain http only to a loopback test server.",
    )
    format: Literal["csv", "json", "geojson"] = Field(description="What the URL serves.")
    records: str | None = Field(
        None,
        description="JSON only: key of the list of records when the document is an object; a dotted "
        "path such as result.records reaches into nested objects.",
    )
    encoding: str = Field("utf-8", description="CSV only: text encoding.")
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV only: delimiter.")
    geometry: Literal["drop", "wkt", "centroid"] = Field(
        "centroid", description="GeoJSON only: how geometry is published (as for a geojson source)."
    )
    timeout_s: float = Field(60, gt=0, description="Seconds to wait for the server at each step.")
    max_bytes: int = Field(
        2 << 30, ge=1, description="Largest body accepted; a bigger one is refused, not truncated."
    )
    retries: int = Field(
        4, ge=0, le=10, description="Retries (with backoff) after a 5xx or a connection error only."
    )

    @field_validator("url")
    @classmethod
    def _https_off_loopback(cls, value: str) -> str:
        scheme, _, rest = value.partition("://")
        host = rest.split("/", 1)[0].rsplit(":", 1)[0]
        if scheme == "http" and host not in _LOOPBACK:
            raise ValueError(
                f"url {value!r}: plain http is only allowed to a loopback server; use https"
            )
        return value


class GeoJsonSource(StrictModel):
    """A GeoJSON FeatureCollection; feature properties become columns."""

    kind: Literal["geojson"] = Field(description="Source kind.")
    path: str = Field(description="Path of the file, relative to the project folder.")
    geometry: Literal["drop", "wkt", "centroid"] = Field(
        "centroid",
        description="How geometry is published: dropped, as WKT text, or as centroid latitude/longitude columns.",
    )


class SocrataSource(StrictModel):
    """A dataset on a Socrata portal, pulled page by page over SODA 2.1.

    Credentials are never in the spec: the app token comes from the environment
    variable ``app_token_env`` names; a private dataset also needs
    CIVICFLOW_SOCRATA_KEY_ID and CIVICFLOW_SOCRATA_KEY_SECRET.
    """

    kind: Literal["socrata"] = Field(description="Source kind.")
    domain: str = Field(
        description="The portal's domain, e.g. data.lacity.org (HTTPS). A loopback test "
        "server may be given as http://127.0.0.1:PORT; plain HTTP to any other host is refused "
        "(the app token would travel in clear)."
    )
    dataset: str = Field(
        pattern=FOUR_BY_FOUR, description="The dataset's four-by-four id, e.g. rq3b-xjk8."
    )
    where: str | None = Field(
        None, description="SoQL $where filter, e.g. \"requesttype = 'Graffiti Removal'\"."
    )
    select: list[str] | None = Field(
        None, description="Socrata field names to pull ($select); default: every column."
    )
    order: str = Field(
        ":id",
        min_length=1,
        description="SoQL $order; :id is appended as a tie-breaker so paging is stable "
        "(https://dev.socrata.com/docs/paging).",
    )
    page_size: int = Field(
        10_000,
        ge=1,
        le=50_000,
        description="Rows per request ($limit). 10,000 (as Socrata's DataSync chunks) pulls "
        "a million rows in 100 requests, keeps each page a few MB and a retried page cheap; "
        "SODA 2.0 endpoints cap $limit at 50,000.",
    )
    app_token_env: str = Field(
        "CIVICFLOW_SOCRATA_APP_TOKEN",
        pattern=_ENV_NAME,
        description="Name of the environment variable holding the app token (never the token itself).",
    )

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        scheme, sep, host = value.rpartition("://")
        if not sep:
            scheme, host = "https", value
        if scheme not in ("http", "https") or not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+", host):
            raise ValueError(
                f"domain {value!r}: a host name such as data.lacity.org (no path, no query)"
            )
        if scheme == "http" and host.rsplit(":", 1)[0] not in _LOOPBACK:
            raise ValueError(
                f"domain {value!r}: plain http is only allowed to a loopback test server; use https"
            )
        return value

    @field_validator("select")
    @classmethod
    def _select(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            bad = [v for v in value if not _SOCRATA_FIELD.match(v)]
            if bad or not value:
                raise ValueError(
                    f"select: Socrata field names (lower case, a-z, 0-9, _), not {bad or 'an empty list'}"
                )
        return value


#: sources read from a file (``path``); other kinds are pulled from a service
FileSource = CsvSource | GeoJsonSource | ExcelSource
SourceSpec = Annotated[
    CsvSource | GeoJsonSource | ExcelSource | SocrataSource | PostgresSource | HttpSource,
    Field(discriminator="kind"),
]


class ReprojectTransform(StrictModel):
    """Convert projected coordinates (e.g. State Plane feet) to WGS84 degrees in place."""

    kind: Literal["reproject"] = Field(description="Transform kind.")
    x_field: str = Field(description="Field holding the easting (x), replaced by longitude.")
    y_field: str = Field(description="Field holding the northing (y), replaced by latitude.")
    source_crs: str = Field(
        description="CRS of the input, e.g. EPSG:2229 (California zone V, US feet)."
    )
    missing_values: list[float] = Field(
        default_factory=list, description="Sentinel values that mean no coordinate (become null)."
    )


TransformSpec = Annotated[ReprojectTransform, Field(discriminator="kind")]


class Steward(StrictModel):
    """The person who answers for a dataset."""

    name: str = Field(description="Steward's name or role.")
    email: str = Field(
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", description="Contact email shown on the portal."
    )


class PortalTarget(StrictModel):
    """Where the dataset is published."""

    kind: str = Field("datasette", description="Registered portal kind (datasette, socrata, ...).")
    table: str | None = Field(
        None, description="Table or dataset name on the portal (default: the dataset id)."
    )


class PrivacyReview(StrictModel):
    """Record that someone reviewed the dataset for privacy before publishing."""

    reviewed_by: str = Field(description="Who reviewed the dataset's privacy rules.")
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="Review date (YYYY-MM-DD).")
    notes: str | None = Field(None, description="What the review concluded.")


class DatasetPrivacy(StrictModel):
    """Dataset-level privacy settings."""

    review: PrivacyReview | None = Field(None, description="The privacy review behind this spec.")
    small_count_columns: list[str] = Field(
        default_factory=list,
        description="Count columns of an aggregate output to suppress below the threshold.",
    )
    small_count_threshold: int = Field(
        11, ge=1, description="Counts below this are published as suppressed."
    )


class RetentionSpec(StrictModel):
    """A dataset's own retention of private run state, overriding the project's."""

    keep_runs: int | None = Field(
        None,
        ge=1,
        description="Keep the raw copies and reports of this many newest runs "
        "(default: CIVICFLOW_KEEP_RUNS, 20).",
    )
    keep_days: float | None = Field(
        None,
        ge=0,
        description="Also keep every run younger than this many days "
        "(default: CIVICFLOW_KEEP_DAYS, 3).",
    )


class ScheduleSpec(StrictModel):
    """When the dataset's own deployment runs (default: from update_frequency)."""

    cron: str | None = Field(
        None,
        description="Cron expression (five fields), e.g. '5 * * * *' for five past every hour.",
    )
    interval_minutes: int | None = Field(
        None, ge=1, description="Run every this many minutes instead of on a cron."
    )
    timezone: str = Field("America/Los_Angeles", description="IANA time zone the cron is read in.")
    active: bool = Field(True, description="false keeps the deployment but pauses its schedule.")

    @model_validator(mode="after")
    def _cron_or_interval(self) -> ScheduleSpec:
        if self.cron is not None and self.interval_minutes is not None:
            raise ValueError("give cron or interval_minutes, not both")
        if self.cron is not None and len(self.cron.split()) != 5:
            raise ValueError(f"cron {self.cron!r}: five fields (minute hour day month weekday)")
        return self


class IncrementalSpec(StrictModel):
    """Extract only rows changed since the last published run, upserted by primary key."""

    cursor: str = Field(
        description="Field (date, datetime or integer) that grows when a row is added or "
        "changed, e.g. updated_at; rows above the stored watermark are extracted."
    )


class BadRowsSpec(StrictModel):
    """What a run does with rows that fail a row-level critical check."""

    action: Literal["reject", "quarantine"] = Field(
        "reject",
        description="reject: one bad row rejects the run; quarantine: bad rows are held back "
        "in a private file with the reason per row and the rest is published.",
    )
    max_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Largest share of rows that may be quarantined; above it the run is rejected.",
    )


class DatasetSpec(StrictModel):
    """One dataset: where it comes from, what it holds, how it is checked and published."""

    id: str = Field(description="snake_case identifier; also the portal table name.")
    title: str = Field(min_length=3, description="Human title shown on the portal.")
    description: str = Field(
        min_length=10, description="What the dataset holds and how it is collected."
    )
    title_es: str | None = Field(
        None, description="Spanish title for the catalog (English is shown, with a note, without)."
    )
    description_es: str | None = Field(
        None, description="Spanish description for the catalog (falls back to English)."
    )
    department: str = Field(description="Owning department.")
    steward: Steward = Field(description="Who answers questions about the data.")
    license: str = Field(description="SPDX license identifier, e.g. CC0-1.0.")
    update_frequency: UpdateFrequency = Field(description="How often the dataset is refreshed.")
    category: str = Field(description="Portal category (e.g. Service Requests, Transportation).")
    tags: list[str] = Field(default_factory=list, description="Keywords for search on the portal.")
    provenance: str | None = Field(
        None, description="Where the data came from (system, export, licence facts)."
    )
    access_level: Literal["public", "restricted public", "non-public"] = Field(
        "public", description="DCAT-US access level."
    )
    source: SourceSpec = Field(description="How to extract the data.")
    transforms: list[TransformSpec] = Field(
        default_factory=list,
        description="Column transforms applied after parsing and before validation.",
    )
    fields: list[FieldSpec] = Field(min_length=1, description="Columns, in published order.")
    primary_key: list[str] = Field(
        default_factory=list,
        description="Field names whose values identify a row (checked unique).",
    )
    expectation_suite: str | None = Field(
        None,
        description="Name of the GX suite in expectations/ (default: the dataset id). Every dataset needs its suite file: `civicflow check` reports a missing one and runs refuse.",
    )
    portal: PortalTarget = Field(
        default_factory=PortalTarget, description="Where the dataset is published."
    )
    produced_by: str | None = Field(
        None,
        description="Name of the flow whose output is this dataset's source (e.g. scorecard); publish --all leaves it to that flow.",
    )
    privacy: DatasetPrivacy = Field(
        default_factory=DatasetPrivacy, description="Dataset-level privacy settings."
    )
    retention: RetentionSpec | None = Field(
        None,
        description="How long this dataset's raw copies and reports are kept "
        "(default: the project's CIVICFLOW_KEEP_RUNS / CIVICFLOW_KEEP_DAYS).",
    )
    schedule: ScheduleSpec | None = Field(
        None,
        description="When its deployment publishes it (default: a cron from update_frequency; "
        "irregular and static datasets get no schedule of their own).",
    )
    incremental: IncrementalSpec | None = Field(
        None,
        description="Extract only rows whose cursor is above the last run's watermark and "
        "upsert them by primary_key (default: every run reads the whole source).",
    )
    on_schema_change: Literal["fail", "ignore_new"] = Field(
        "fail",
        description="When the source has columns the spec does not name: fail rejects the run; "
        "ignore_new publishes without them and reports them. A missing or retyped column always rejects.",
    )
    on_bad_rows: BadRowsSpec = Field(
        default_factory=BadRowsSpec,
        description="Reject the run on a bad row (default) or quarantine bad rows up to a share.",
    )
    record_date: str | None = Field(
        None,
        description=(
            "Published date or datetime field saying when each record happened (e.g. "
            "created_date); the timeliness criterion compares its latest value with "
            "update_frequency. Default: the first published date field that is never empty."
        ),
    )

    @field_validator("id")
    @classmethod
    def _snake_id(cls, value: str) -> str:
        if not SNAKE_CASE.match(value):
            raise ValueError(f"id {value!r} must be snake_case (a-z, 0-9, _)")
        return value

    @model_validator(mode="after")
    def _references_exist(self) -> DatasetSpec:
        names = [f.name for f in self.fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate field names: {', '.join(duplicates)}")
        for key in self.primary_key:
            if key not in names:
                raise ValueError(f"primary_key names {key!r}, which is not a field")
        for transform in self.transforms:
            for ref in (transform.x_field, transform.y_field):
                if ref not in names:
                    raise ValueError(
                        f"transform {transform.kind} names {ref!r}, which is not a field"
                    )
        for f in self.fields:
            for ref in f.privacy.redact_values_of if f.privacy else []:
                if ref not in names or ref == f.name:
                    raise ValueError(
                        f"field {f.name}: privacy.redact_values_of names {ref!r}, which is not another field"
                    )
        for col in self.privacy.small_count_columns:
            if col not in names:
                raise ValueError(f"privacy.small_count_columns names {col!r}, which is not a field")
        self._check_indexes()
        return self

    def _check_indexes(self) -> None:
        published = [f.name for f in self.published_fields()]
        for f in self.fields:
            if f.index is False or f.index == []:
                continue
            if f.name not in published:
                raise ValueError(
                    f"field {f.name}: index on a field its privacy rule drops (it never reaches the portal)"
                )
            also = f.index if isinstance(f.index, list) else []
            for ref in also:
                if ref not in published or ref == f.name:
                    raise ValueError(
                        f"field {f.name}: index names {ref!r}, which is not another published field"
                    )
            if len(set(also)) != len(also):
                raise ValueError(f"field {f.name}: index names a field twice")

    @model_validator(mode="after")
    def _record_date_is_a_published_date(self) -> DatasetSpec:
        if self.record_date is None:
            return self
        match = [f for f in self.published_fields() if f.name == self.record_date]
        if not match or str(match[0].type) not in ("date", "datetime"):
            raise ValueError(
                f"record_date names {self.record_date!r}, which is not a published date or datetime field"
            )
        return self

    @model_validator(mode="after")
    def _incremental_has_a_key_and_cursor(self) -> DatasetSpec:
        if self.incremental is None:
            return self
        if not self.primary_key:
            raise ValueError("incremental needs a primary_key (changed rows are upserted by it)")
        cursor = [f for f in self.fields if f.name == self.incremental.cursor]
        if not cursor or str(cursor[0].type) not in ("date", "datetime", "integer"):
            raise ValueError(
                f"incremental.cursor names {self.incremental.cursor!r}, which is not a date, "
                "datetime or integer field"
            )
        return self

    @property
    def record_date_field(self) -> str | None:
        """The field timeliness reads: declared, else the first never-empty published date."""
        if self.record_date is not None:
            return self.record_date
        dates = [
            f
            for f in self.published_fields()
            if str(f.type) in ("date", "datetime") and not f.nullable
        ]
        return dates[0].name if dates else None

    @property
    def table(self) -> str:
        return self.portal.table or self.id

    def targeting(self, kind: str | None) -> DatasetSpec:
        """This spec published to portal ``kind`` instead (``publish --portal``); same table."""
        if kind is None or kind == self.portal.kind:
            return self
        return self.model_copy(update={"portal": self.portal.model_copy(update={"kind": kind})})

    @property
    def suite_name(self) -> str:
        return self.expectation_suite or self.id

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def published_fields(self) -> list[FieldSpec]:
        """Fields that reach the portal (dropped ones never leave the extract)."""
        return [f for f in self.fields if not (f.privacy and f.privacy.rule == "drop")]
