"""sodapy 2.2.0 itself, over real HTTP, against the Socrata test server.

What sodapy sends is what civicflow's Socrata adapter will send: JSON bodies without a
Content-Type, HTTP Basic for writes, ``X-App-token`` on every request, ``$offset`` paging
that stops on a page shorter than 1,000 rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sodapy import Socrata

from tests.socrata.fixtures import (
    APP_TOKEN,
    KEY_ID,
    KEY_SECRET,
    READER_ID,
    READER_SECRET,
    SocrataServer,
)

COLUMNS = [
    ("request_id", "text"),
    ("kind", "text"),
    ("days", "number"),
    ("opened", "calendar_date"),
]
KINDS = ("graffiti", "pothole", "bulky item")


def service_rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "request_id": f"SR{i:06d}",
            "kind": KINDS[i % 3],
            "days": i % 17,
            "opened": f"2024-01-{i % 28 + 1:02d}T00:00:00.000",
        }
        for i in range(n)
    ]


def refused(caught: pytest.ExceptionInfo[requests.HTTPError]) -> requests.Response:
    """The response sodapy raised for."""
    response = caught.value.response
    assert response is not None
    return response


def client(
    server: SocrataServer,
    username: str | None = KEY_ID,
    password: str | None = KEY_SECRET,
    token: str = APP_TOKEN,
) -> Socrata:
    adapter = {"prefix": "http://", "adapter": requests.adapters.HTTPAdapter()}
    return Socrata(
        server.domain,
        token,
        username=username,
        password=password,
        session_adapter=adapter,
        timeout=30,
    )


@pytest.fixture
def soda(socrata: SocrataServer) -> Iterator[Socrata]:
    with client(socrata) as c:
        yield c


@pytest.fixture
def dataset_id(socrata: SocrataServer) -> str:
    return socrata.create_dataset(COLUMNS, service_rows(30), row_identifier="request_id").id


def test_get_with_soql_returns_string_values(soda: Socrata, dataset_id: str) -> None:
    rows = soda.get(
        dataset_id,
        select="request_id, days",
        where="kind = 'pothole' AND days >= 5",
        order="days DESC, request_id",
        limit=4,
    )
    expected = sorted(
        (r for r in service_rows(30) if r["kind"] == "pothole" and r["days"] >= 5),
        key=lambda r: (-r["days"], r["request_id"]),
    )[:4]
    assert rows == [{"request_id": r["request_id"], "days": str(r["days"])} for r in expected]


def test_get_csv_has_a_header_row(soda: Socrata, dataset_id: str) -> None:
    rows = soda.get(dataset_id, content_type="csv", order=":id", limit=2)
    assert rows == [
        ["request_id", "kind", "days", "opened"],
        ["SR000000", "graffiti", "0", "2024-01-01T00:00:00.000"],
        ["SR000001", "pothole", "1", "2024-01-02T00:00:00.000"],
    ]


def test_get_all_pages_past_the_default_page(soda: Socrata, socrata: SocrataServer) -> None:
    rows = service_rows(2500)
    big = socrata.create_dataset(COLUMNS, rows, row_identifier="request_id")
    before = socrata.app.throttle.seen
    got = list(soda.get_all(big.id))
    assert [r["request_id"] for r in got] == [r["request_id"] for r in rows]
    # 1,000 + 1,000 + 500: sodapy stops on the short page, so three requests in all.
    assert socrata.app.throttle.seen - before == 3


def test_get_metadata_describes_columns_and_row_identifier(soda: Socrata, dataset_id: str) -> None:
    view = soda.get_metadata(dataset_id)
    assert [(c["fieldName"], c["dataTypeName"]) for c in view["columns"]] == COLUMNS
    (key,) = [c for c in view["columns"] if c["id"] == view["rowIdentifierColumnId"]]
    assert key["fieldName"] == "request_id"
    assert view["publicationStage"] == "published"


def test_upsert_creates_updates_and_deletes_by_row_identifier(
    soda: Socrata, dataset_id: str
) -> None:
    result = soda.upsert(
        dataset_id,
        [
            {"request_id": "SR900000", "kind": "pothole", "days": 1},
            {"request_id": "SR000001", "days": 99},
            {"request_id": "SR000002", ":deleted": True},
        ],
    )
    assert result == {
        "By RowIdentifier": 2,
        "Rows Updated": 1,
        "Rows Deleted": 1,
        "Rows Created": 1,
        "Errors": 0,
        "By SID": 0,
    }
    rows = {r["request_id"]: r for r in soda.get(dataset_id, limit=100)}
    assert len(rows) == 30
    assert rows["SR000001"]["days"] == "99" and rows["SR000001"]["kind"] == "pothole"
    assert "SR000002" not in rows and rows["SR900000"]["kind"] == "pothole"
    # Upsert is idempotent: the same payload again changes nothing more.
    again = soda.upsert(dataset_id, [{"request_id": "SR000002", ":deleted": True}])
    assert again["Rows Deleted"] == 0


def test_replace_leaves_exactly_the_new_rows(soda: Socrata, dataset_id: str) -> None:
    result = soda.replace(dataset_id, service_rows(3))
    assert result["Rows Created"] == 3 and result["Errors"] == 0
    assert [r["request_id"] for r in soda.get(dataset_id)] == ["SR000000", "SR000001", "SR000002"]


def test_delete_one_row(soda: Socrata, dataset_id: str) -> None:
    soda.delete(dataset_id, row_id="SR000005")
    ids = [r["request_id"] for r in soda.get(dataset_id, limit=100)]
    assert "SR000005" not in ids and len(ids) == 29
    with pytest.raises(requests.HTTPError, match="404"):
        soda.delete(dataset_id, row_id="SR000005")


def test_a_bad_value_is_refused_naming_row_and_field(soda: Socrata, dataset_id: str) -> None:
    with pytest.raises(requests.HTTPError) as caught:
        soda.upsert(dataset_id, [{"request_id": "SR1"}, {"request_id": "SR2", "days": "many"}])
    assert refused(caught).status_code == 400
    assert "row 1, field 'days'" in str(caught.value)
    assert len(soda.get(dataset_id, limit=100)) == 30  # nothing of the refused payload landed


def test_create_publish_update_metadata_permission_and_delete(
    soda: Socrata, socrata: SocrataServer
) -> None:
    columns = [{"fieldName": "request_id", "name": "Request", "dataTypeName": "text"}]
    view = soda.create(
        "311 requests", columns=columns, row_identifier="request_id", category="Service"
    )
    assert view["publicationStage"] == "unpublished"
    with client(socrata, None, None) as anonymous:
        with pytest.raises(requests.HTTPError, match="403"):
            anonymous.get(view["id"])  # a working copy is not public
        published = soda.publish(view["id"])
        assert published["publicationStage"] == "published"
        assert anonymous.get(view["id"]) == []
        updated = soda.update_metadata(view["id"], {"description": "Requests to 311"})
        assert updated["description"] == "Requests to 311" and updated["category"] == "Service"
        soda.set_permission(view["id"], "private")
        with pytest.raises(requests.HTTPError, match="403"):
            anonymous.get(view["id"])
        soda.set_permission(view["id"], "public")
        assert anonymous.get_metadata(view["id"])["name"] == "311 requests"
        soda.delete(view["id"])  # the whole dataset
        with pytest.raises(requests.HTTPError, match="404"):
            anonymous.get_metadata(view["id"])


@pytest.mark.parametrize(
    ("username", "password", "status"),
    [(KEY_ID, "wrong-secret", 401), (None, None, 403), (READER_ID, READER_SECRET, 403)],
)
def test_writes_need_valid_write_credentials(
    socrata: SocrataServer,
    dataset_id: str,
    username: str | None,
    password: str | None,
    status: int,
) -> None:
    with client(socrata, username, password) as c:
        with pytest.raises(requests.HTTPError) as caught:
            c.upsert(dataset_id, [{"request_id": "SR999999"}])
        assert refused(caught).status_code == status
        body = refused(caught).json()
        assert body["error"] is True and set(body) == {"code", "error", "message", "data"}
        assert "wrong-secret" not in refused(caught).text
        assert len(c.get(dataset_id, limit=100)) == 30  # reads stay open


def test_an_unknown_app_token_is_refused(socrata: SocrataServer, dataset_id: str) -> None:
    with client(socrata, token="not-a-token") as c, pytest.raises(requests.HTTPError, match="403"):
        c.get(dataset_id)


def test_throttled_requests_get_429_with_retry_after(
    soda: Socrata, socrata: SocrataServer, dataset_id: str
) -> None:
    socrata.throttle(1, retry_after=3)
    with pytest.raises(requests.HTTPError) as caught:
        soda.get(dataset_id)
    assert refused(caught).status_code == 429
    assert refused(caught).headers["Retry-After"] == "3"
    assert len(soda.get(dataset_id)) == 30  # the throttle was for one request only


def test_the_socrata_types_a_spec_can_name(soda: Socrata, socrata: SocrataServer) -> None:
    """text, number, checkbox, calendar_date, point, url: written as sodapy sends them, read
    back in SODA 2's forms (https://dev.socrata.com/docs/datatypes/)."""
    columns = [
        ("id", "text"),
        ("n", "number"),
        ("open", "checkbox"),
        ("opened", "calendar_date"),
        ("where", "point"),
        ("link", "url"),
    ]
    target = socrata.create_dataset(columns, row_identifier="id").id
    soda.upsert(
        target,
        [
            {
                "id": "a",
                "n": 1.5,
                "open": True,
                "where": "POINT (-118.25 34.05)",
                "link": {"url": "https://example.org/a"},
            },
            {
                "id": "b",
                "n": 2,
                "open": False,
                "opened": "2024-03-01",
                "where": {"type": "Point", "coordinates": [-118.5, 34.1]},
            },
            {"id": "c"},
        ],
    )
    rows = soda.get(target, order="id")
    assert rows == [
        {
            "id": "a",
            "n": "1.5",
            "open": True,
            "where": {"type": "Point", "coordinates": [-118.25, 34.05]},
            "link": {"url": "https://example.org/a"},
        },
        {
            "id": "b",
            "n": "2",
            "open": False,
            "opened": "2024-03-01T00:00:00.000",
            "where": {"type": "Point", "coordinates": [-118.5, 34.1]},
        },
        {"id": "c"},  # nulls are absent keys, as in every recorded row
    ]
    assert [r["id"] for r in soda.get(target, where="open = true")] == ["a"]
    headers = requests.get(f"{socrata.url}/resource/{target}.json", timeout=30).headers
    assert (
        headers["X-SODA2-Types"] == '["text","number","boolean","floating_timestamp","point","url"]'
    )
