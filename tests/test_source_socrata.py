"""A Socrata dataset as a source, pulled over real HTTP from the Socrata test server.

Specs are written into a copy of the project (``project`` fixture) and run through
``extract`` or the whole ``pipeline.run_dataset`` to a real Datasette portal. Nothing is
mocked: throttling, errors and outages are the test server's own (or a thin ASGI
wrapper in front of it that answers some requests itself).
"""

from __future__ import annotations

import json
import logging
import socket
import stat
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from pydantic import ValidationError

from civicflow.pipeline import new_run_id, run_dataset
from civicflow.settings import Settings, load_settings
from civicflow.sources import ExtractError, extract
from civicflow.sources.socrata import KEY_ID_ENV, KEY_SECRET_ENV, RetryPolicy, pull_pages
from civicflow.spec.models import DatasetSpec, SocrataSource
from tests.socrata.fixtures import (
    APP_TOKEN,
    KEY_ID,
    KEY_SECRET,
    READER_ID,
    READER_SECRET,
    SocrataServer,
    serve,
)

DATASET_ID = "sr_socrata"
TOKEN_ENV = "CIVICFLOW_SOCRATA_APP_TOKEN"
COLUMNS = [
    ("request_id", "text"),
    ("kind", "text"),
    ("days", "number"),
    ("opened", "calendar_date"),
    ("resolved", "checkbox"),
    ("location", "point"),
]
KINDS = ("graffiti", "pothole", "bulky item")
FIELDS: list[dict[str, Any]] = [
    {"name": "request_id", "type": "string", "description": "Service request number."},
    {
        "name": "request_type",
        "source": "kind",
        "type": "string",
        "description": "What was requested.",
    },
    {"name": "days", "type": "integer", "description": "Days open."},
    {"name": "opened", "type": "datetime", "description": "When it was opened."},
    {"name": "resolved", "type": "boolean", "description": "Whether it is resolved."},
    {
        "name": "location",
        "type": "geopoint",
        "description": "Where, as (latitude, longitude) to 3 decimals.",
        "semantic": "geopoint",
        "precision": 3,
    },
]


def service_rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "request_id": f"SR{i:06d}",
            "kind": KINDS[i % 3],
            "days": i % 17,
            "opened": f"2024-01-{i % 28 + 1:02d}T{i % 24:02d}:15:00",
            "resolved": i % 2 == 0,
            "location": f"POINT (-118.{i % 900 + 100:03d} 34.{i % 800 + 100:03d})",
        }
        for i in range(n)
    ]


def spec_dict(dataset: str, domain: str, **source: Any) -> dict[str, Any]:
    fields = source.pop("fields", FIELDS)
    return {
        "id": DATASET_ID,
        "title": "Service requests from Socrata",
        "description": "Service requests pulled from a Socrata portal.",
        "department": "Test Department",
        "steward": {"name": "Data steward", "email": "steward@example.org"},
        "license": "CC0-1.0",
        "update_frequency": "daily",
        "category": "Service Requests",
        "source": {"kind": "socrata", "domain": domain, "dataset": dataset, **source},
        "fields": fields,
        "primary_key": ["request_id"],
    }


def make_spec(dataset: str, domain: str, **source: Any) -> DatasetSpec:
    return DatasetSpec.model_validate(spec_dict(dataset, domain, **source))


def write_project_spec(settings: Settings, spec: dict[str, Any]) -> None:
    """The spec and its suite into the project copy, as a steward would add them."""
    (settings.datasets_dir / f"{DATASET_ID}.yaml").write_text(yaml.safe_dump(spec))
    suite = {
        "name": DATASET_ID,
        "expectations": [
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "request_id"},
                "meta": {"severity": "critical", "why": "Every request has a number."},
            }
        ],
    }
    (settings.expectations_dir / f"{DATASET_ID}.json").write_text(json.dumps(suite))


@pytest.fixture
def env(project: Settings, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Settings over the project copy with these environment variables (the app token by default)."""

    def make(**variables: str | None) -> Settings:
        values = {TOKEN_ENV: APP_TOKEN, **variables}
        for name, value in values.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        return load_settings()

    return make


@pytest.fixture
def services(socrata: SocrataServer) -> str:
    """A 2,500-row dataset on the test server (more than Socrata's default page of 1,000)."""
    return socrata.create_dataset(COLUMNS, service_rows(2500), row_identifier="request_id").id


def raw_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# -- end to end ---------------------------------------------------------------------------


def test_a_spec_driven_pull_publishes_every_row_to_the_portal(
    socrata: SocrataServer,
    services: str,
    env: Callable[..., Settings],
    datasette_factory: Callable[[], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    portal = datasette_factory()
    for key, value in portal.env.items():
        monkeypatch.setenv(key, value)
    settings = env()
    write_project_spec(settings, spec_dict(services, socrata.url))

    outcome = run_dataset(settings, DATASET_ID)

    assert outcome.outcome == "published", outcome.reason
    assert outcome.record.rows_in == 2500
    assert portal.row_count(DATASET_ID) == 2500
    row = portal.query(
        f"select request_id, request_type, days, opened, resolved, location from {DATASET_ID} "
        "where request_id = 'SR001234'"
    )[0]
    source = service_rows(2500)[1234]
    assert row["request_type"] == source["kind"]
    assert row["days"] == source["days"]
    assert row["opened"] == source["opened"]  # Socrata's milliseconds gone, the value kept
    assert str(row["resolved"]).lower() in ("1", "true")  # even rows are resolved
    assert row["location"] == f"(34.{1234 % 800 + 100:03d}, -118.{1234 % 900 + 100:03d})"
    # the raw copy is Socrata's CSV, private to its owner
    raw = settings.raw_dir / DATASET_ID / f"{outcome.record.run_id}.csv"
    assert stat.S_IMODE(raw.stat().st_mode) == 0o400
    assert stat.S_IMODE(raw.parent.stat().st_mode) == 0o700
    assert raw_text(raw).count("\n") == 2501


def test_pages_are_stitched_into_the_same_bytes_as_one_unpaged_read(
    socrata: SocrataServer, services: str, env: Callable[..., Settings]
) -> None:
    settings = env()
    spec = make_spec(services, socrata.url, page_size=1000)  # 3 pages: 1000, 1000, 500
    ext = extract(spec, settings, new_run_id())

    whole = requests.get(
        f"{socrata.url}/resource/{services}.csv",
        params={"$order": ":id", "$limit": 5000},
        headers={"X-App-Token": APP_TOKEN},
        timeout=30,
    )
    assert ext.raw_path.read_bytes() == whole.content
    assert ext.rows == 2500
    assert list(ext.frame["request_id"][:3]) == ["SR000000", "SR000001", "SR000002"]
    assert ext.frame["request_id"].is_unique


def test_a_page_that_ends_the_dataset_exactly_is_followed_by_an_empty_one(
    socrata: SocrataServer, env: Callable[..., Settings]
) -> None:
    dataset = socrata.create_dataset(COLUMNS, service_rows(2000)).id
    ext = extract(make_spec(dataset, socrata.url, page_size=1000), env(), new_run_id())
    assert ext.rows == 2000
    assert ext.frame["request_id"].iloc[-1] == "SR001999"


def test_where_select_and_order_are_sent_as_soql(
    socrata: SocrataServer, services: str, env: Callable[..., Settings]
) -> None:
    spec = make_spec(
        services,
        socrata.url,
        where="kind = 'pothole' AND days >= 10",
        select=["request_id", "kind", "days"],
        order="days DESC",
        page_size=100,
        fields=FIELDS[:3],
    )
    ext = extract(spec, env(), new_run_id())

    expected = [r for r in service_rows(2500) if r["kind"] == "pothole" and r["days"] >= 10]
    assert ext.rows == len(expected) > 100  # several pages
    assert ext.raw.column_names == ["request_id", "kind", "days"]
    assert set(ext.frame["request_type"]) == {"pothole"}
    days = list(ext.frame["days"])
    assert days == sorted(days, reverse=True)
    # :id breaks the ties, so paging neither repeats nor skips a row
    assert sorted(ext.frame["request_id"]) == sorted(r["request_id"] for r in expected)


def test_typed_from_the_dataset_columns_a_declared_type_they_cannot_hold_is_refused(
    socrata: SocrataServer, services: str, env: Callable[..., Settings]
) -> None:
    fields = [dict(f) for f in FIELDS]
    fields[2]["type"] = "boolean"  # days is a number column
    fields[3]["type"] = "geopoint"  # opened is a calendar date
    with pytest.raises(ExtractError) as caught:
        extract(make_spec(services, socrata.url, fields=fields), env(), new_run_id())
    message = str(caught.value)
    assert services in message and socrata.domain in message
    assert "days is declared boolean but days is number" in message
    assert "opened is declared geopoint but opened is floating_timestamp" in message


def test_values_go_through_the_same_casting_and_checks_as_a_file(
    socrata: SocrataServer, env: Callable[..., Settings]
) -> None:
    rows = [{"request_id": f"SR{i:06d}", "days": str(i)} for i in range(50)]
    rows[7]["days"] = "n/a-7b3e"  # text column, declared integer: a type error at row 8
    dataset = socrata.create_dataset([("request_id", "text"), ("days", "text")], rows).id
    settings = env()
    write_project_spec(settings, spec_dict(dataset, socrata.url, fields=[FIELDS[0], FIELDS[2]]))

    outcome = run_dataset(settings, DATASET_ID)

    assert outcome.outcome == "rejected"
    assert "type-error days" in outcome.reason and "(row 8)" in outcome.reason
    assert "n/a-7b3e" not in outcome.reason
    assert outcome.report_path is not None
    report = outcome.report_path.read_text()
    assert "n/a-7b3e" in report  # the example value stays in the private report
    assert stat.S_IMODE(outcome.report_path.stat().st_mode) == 0o600


def test_a_file_given_with_source_replays_a_pull_without_the_portal(
    socrata: SocrataServer, services: str, env: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = env()
    spec = make_spec(services, socrata.url)
    first = extract(spec, settings, new_run_id())
    socrata.stop()
    try:
        again = extract(spec, settings, new_run_id(), source_path=first.raw_path)
    finally:
        socrata.start()
    assert again.sha256 == first.sha256
    assert again.frame.equals(first.frame)


# -- credentials ----------------------------------------------------------------------------


def test_a_wrong_app_token_names_the_variable_and_never_the_token(
    socrata: SocrataServer,
    services: str,
    env: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "not-the-token-7d1f"
    settings = env(**{TOKEN_ENV: wrong})
    write_project_spec(settings, spec_dict(services, socrata.url))
    with caplog.at_level(logging.DEBUG):
        outcome = run_dataset(settings, DATASET_ID)

    assert outcome.outcome == "rejected"
    assert f"app token refused: check {TOKEN_ENV}" in outcome.reason
    assert "403" in outcome.reason and services in outcome.reason
    report = outcome.report_path.read_text() if outcome.report_path else ""
    for text in (outcome.reason, report, caplog.text):
        assert wrong not in text


def test_the_spec_names_its_own_app_token_variable(
    socrata: SocrataServer, services: str, env: Callable[..., Settings]
) -> None:
    settings = env(**{TOKEN_ENV: "wrong-token", "LA_SOCRATA_TOKEN": APP_TOKEN})
    spec = make_spec(services, socrata.url, app_token_env="LA_SOCRATA_TOKEN")
    assert extract(spec, settings, new_run_id()).rows == 2500


def test_a_private_dataset_needs_the_key_and_names_the_settings(
    socrata: SocrataServer, env: Callable[..., Settings]
) -> None:
    dataset = socrata.create_dataset(COLUMNS, service_rows(10))
    dataset.public = False
    spec = make_spec(dataset.id, socrata.url)

    with pytest.raises(ExtractError) as anonymous:
        extract(spec, env(), new_run_id())
    assert "HTTP 403" in str(anonymous.value)
    assert KEY_ID_ENV in str(anonymous.value) and KEY_SECRET_ENV in str(anonymous.value)

    wrong = "wrong-secret-5c2a"
    with pytest.raises(ExtractError) as refused:
        extract(spec, env(**{KEY_ID_ENV: KEY_ID, KEY_SECRET_ENV: wrong}), new_run_id())
    assert "HTTP 401" in str(refused.value) and "credentials refused" in str(refused.value)
    assert wrong not in str(refused.value) and wrong not in str(refused.value.detail)

    with pytest.raises(ExtractError, match=f"{KEY_ID_ENV} and {KEY_SECRET_ENV} must be set"):
        extract(spec, env(**{KEY_ID_ENV: KEY_ID, KEY_SECRET_ENV: None}), new_run_id())

    reader = env(**{KEY_ID_ENV: READER_ID, KEY_SECRET_ENV: READER_SECRET})
    assert extract(spec, reader, new_run_id()).rows == 10
    writer = env(**{KEY_ID_ENV: KEY_ID, KEY_SECRET_ENV: KEY_SECRET})
    assert extract(spec, writer, new_run_id()).rows == 10


def test_a_missing_dataset_is_named_with_its_domain(
    socrata: SocrataServer, env: Callable[..., Settings]
) -> None:
    settings = env()
    with pytest.raises(ExtractError) as caught:
        extract(make_spec("zzzz-9999", socrata.url), settings, new_run_id())
    message = str(caught.value)
    assert "zzzz-9999" in message and socrata.domain in message
    assert "HTTP 404 dataset.missing" in message and "source.dataset" in message
    assert list((settings.raw_dir / DATASET_ID).glob("*")) == []  # nothing was kept


# -- throttling, server errors, outages -------------------------------------------------


class Wrapped:
    """An ASGI app in front of the test server's: ``answer(n)`` may answer request n
    itself (status, headers); otherwise the Socrata app does. Counts requests."""

    def __init__(self, inner: Any, answer: Callable[[int], tuple[int, dict[str, str]] | None]):
        self.inner = inner
        self.answer = answer
        self.requests = 0

        # A plain coroutine function: uvicorn would take a bound method for an ASGI 2 app.
        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await self.handle(scope, receive, send)

        self.asgi = asgi

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        self.requests += 1
        canned = self.answer(self.requests)
        if canned is None:
            return await self.inner(scope, receive, send)
        status, headers = canned
        body = json.dumps({"code": "internal", "error": True, "message": "down"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def wrapped(socrata: SocrataServer) -> Iterator[Callable[..., tuple[Wrapped, str]]]:
    """Start a wrapper server over the shared test server's datasets; stopped after the test."""
    servers: list[Any] = []

    def make(answer: Callable[[int], tuple[int, dict[str, str]] | None]) -> tuple[Wrapped, str]:
        app = Wrapped(socrata.app.asgi, answer)
        server, thread, port = serve(app)  # type: ignore[arg-type]
        servers.append((server, thread))
        return app, f"http://127.0.0.1:{port}"

    yield make
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def test_throttled_requests_are_retried_after_retry_after(
    socrata: SocrataServer, services: str, env: Callable[..., Settings]
) -> None:
    socrata.throttle(2, retry_after=1)
    started = time.monotonic()
    ext = extract(make_spec(services, socrata.url), env(), new_run_id())
    assert ext.rows == 2500
    assert time.monotonic() - started >= 2.0  # waited as asked, twice


def test_throttling_past_the_retry_budget_gives_up_naming_it(
    socrata: SocrataServer, services: str, env: Callable[..., Settings]
) -> None:
    socrata.throttle(100, retry_after=1)
    spec = make_spec(services, socrata.url)
    started = time.monotonic()
    with pytest.raises(ExtractError) as caught:
        b"".join(pull_pages(spec, env(), RetryPolicy(total_seconds=2.5)))
    assert time.monotonic() - started < 4
    message = str(caught.value)
    assert "HTTP 429" in message and "retry budget 2.5 s" in message and services in message


def test_retry_after_given_as_an_http_date_is_honoured(
    services: str, env: Callable[..., Settings], wrapped: Callable[..., tuple[Wrapped, str]]
) -> None:
    until = formatdate(time.time() + 2, usegmt=True)  # whole seconds: waits 1-2 s
    app, url = wrapped(lambda n: (429, {"Retry-After": until}) if n == 1 else None)
    started = time.monotonic()
    raw = b"".join(pull_pages(make_spec(services, url), env()))
    assert time.monotonic() - started >= 0.9
    assert raw.count(b"\n") == 2501 and app.requests == 2


def test_server_errors_are_retried_with_backoff(
    services: str, env: Callable[..., Settings], wrapped: Callable[..., tuple[Wrapped, str]]
) -> None:
    app, url = wrapped(lambda n: (503, {"Content-Type": "application/json"}) if n <= 2 else None)
    policy = RetryPolicy(first_backoff=0.1)
    raw = b"".join(pull_pages(make_spec(services, url), env(), policy))
    assert raw.count(b"\n") == 2501
    assert app.requests == 3


def test_a_portal_that_does_not_answer_is_retried_then_named(
    env: Callable[..., Settings],
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = make_spec("abcd-1234", f"http://127.0.0.1:{port}")
    policy = RetryPolicy(total_seconds=1.0, first_backoff=0.2)
    started = time.monotonic()
    with pytest.raises(ExtractError) as caught:
        b"".join(pull_pages(spec, env(), policy))
    assert time.monotonic() - started < 2
    message = str(caught.value)
    assert "no response (ConnectionError)" in message and "attempt(s)" in message
    assert "abcd-1234" in message and str(port) in message


def test_other_client_errors_are_not_retried(
    services: str, env: Callable[..., Settings], wrapped: Callable[..., tuple[Wrapped, str]]
) -> None:
    app, url = wrapped(lambda n: None)
    spec = make_spec(services, url, where="no_such_column = 1")
    with pytest.raises(ExtractError) as caught:
        b"".join(pull_pages(spec, env(), RetryPolicy(first_backoff=0.1)))
    assert app.requests == 1
    assert "HTTP 400 query.compiler.malformed: query refused" in str(caught.value)
    assert "source.where" in str(caught.value)


def test_a_pull_that_fails_half_way_leaves_no_raw_copy(
    services: str, env: Callable[..., Settings], wrapped: Callable[..., tuple[Wrapped, str]]
) -> None:
    _, url = wrapped(lambda n: (404, {"Content-Type": "application/json"}) if n == 2 else None)
    settings = env()
    with pytest.raises(ExtractError, match="HTTP 404"):
        extract(make_spec(services, url, page_size=1000), settings, new_run_id())
    assert list((settings.raw_dir / DATASET_ID).iterdir()) == []  # no copy, no .part


def test_a_dataset_changed_between_pages_is_not_stitched(
    socrata: SocrataServer, env: Callable[..., Settings]
) -> None:
    dataset = socrata.create_dataset(COLUMNS, service_rows(1500), row_identifier="request_id")
    pages = pull_pages(make_spec(dataset.id, socrata.url, page_size=1000), env())
    next(pages)
    time.sleep(1.1)  # Last-Modified has whole seconds
    socrata.app.store.upsert(dataset, [{"request_id": "SR999999", "kind": "graffiti"}])
    with pytest.raises(ExtractError, match="changed while it was read"):
        next(pages)


# -- the spec ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ({"domain": "http://data.lacity.org"}, "plain http is only allowed to a loopback"),
        ({"domain": "data.lacity.org/resource"}, "no path"),
        ({"dataset": "rq3b_xjk8"}, "should match pattern"),
        ({"select": ["Request ID"]}, "Socrata field names"),
        ({"page_size": 50_001}, "less than or equal to 50000"),
        ({"app_token_env": "my-token-value"}, "should match pattern"),
        ({"path": "x.csv"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_socrata_source_keys_are_spec_errors(source: dict[str, Any], problem: str) -> None:
    keys = {"kind": "socrata", "domain": "data.lacity.org", "dataset": "rq3b-xjk8", **source}
    with pytest.raises(ValidationError, match=problem):
        SocrataSource.model_validate(keys)


def test_defaults_page_stably_with_the_token_from_the_environment() -> None:
    source = SocrataSource(kind="socrata", domain="data.lacity.org", dataset="rq3b-xjk8")
    assert (source.order, source.page_size, source.app_token_env) == (
        ":id",
        10_000,
        TOKEN_ENV,
    )
