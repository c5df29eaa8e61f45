"""socrata-py 1.2.0 (the publishing SDK) against the Socrata test server over real TLS.

socrata-py itself creates a dataset from a CSV, replaces its rows through a revision, reads
the error counts of a file that does not fit the dataset's types, and applies while a reader
of ``/resource`` checks it never sees a half-applied replace.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from socrata import Socrata
from socrata.http import UnexpectedResponseException

from tests.socrata.fixtures import KEY_ID, KEY_SECRET, SocrataServer, socratapy_auth

HEADER = "request_id,status,opened,closed,count\n"
POLL = {"sleeptime": 0.02, "timeout": 30}


def csv_file(rows: list[str], name: str = "requests.csv") -> io.BytesIO:
    data = io.BytesIO((HEADER + "".join(r + "\n" for r in rows)).encode())
    data.name = name  # socrata-py's create() names the source after the file
    return data


def rows_of(version: str, n: int) -> list[str]:
    return [f"R{i:06d},{version},2024-01-02T03:04:05,false,{i}" for i in range(n)]


@pytest.fixture
def publisher(socrata_tls: SocrataServer) -> Iterator[Socrata]:
    publishing = socrata_tls.app.publishing
    saved = (publishing.chunk_size, publishing.apply_delay)
    yield Socrata(socratapy_auth(socrata_tls))
    publishing.chunk_size, publishing.apply_delay = saved


def read(server: SocrataServer, fourfour: str, **params: Any) -> requests.Response:
    assert server.tls is not None
    response = requests.get(
        f"{server.url}/resource/{fourfour}.json",
        params={"$limit": 50_000, "$order": ":id", **params},
        auth=(KEY_ID, KEY_SECRET),
        verify=str(server.tls.ca),
        timeout=30,
    )
    response.raise_for_status()
    return response


def create(publisher: Socrata, rows: list[str], **metadata: Any) -> str:
    revision, output = publisher.create(name="311 requests", **metadata).csv(csv_file(rows))
    assert output.attributes["error_count"] == 0
    job = revision.apply(output_schema=output).wait_for_finish(**POLL)
    assert job.attributes["status"] == "successful"
    return str(revision.attributes["fourfour"])


def replace(publisher: Socrata, fourfour: str, rows: list[str]) -> Any:
    """A replace revision with ``rows`` uploaded; returns (revision, finished output schema)."""
    revision = publisher.views.lookup(fourfour).revisions.create_replace_revision()
    source = revision.create_upload("replace.csv").csv(csv_file(rows))
    output = source.get_latest_input_schema().get_latest_output_schema()
    return revision, output.wait_for_finish(**POLL)


def test_socratapy_creates_a_dataset_from_a_csv(
    socrata_tls: SocrataServer, publisher: Socrata
) -> None:
    fourfour = create(publisher, rows_of("open", 3), description="MyLA311 requests")

    response = read(socrata_tls, fourfour)
    assert [r["request_id"] for r in response.json()] == ["R000000", "R000001", "R000002"]
    assert response.json()[2] == {
        "request_id": "R000002",
        "status": "open",
        "opened": "2024-01-02T03:04:05.000",
        "closed": False,
        "count": "2",
    }
    # Types were guessed from the values, as the DSMAPI does for a new dataset.
    assert response.headers["X-SODA2-Types"] == (
        '["text","text","floating_timestamp","boolean","number"]'
    )
    view = publisher.views.lookup(fourfour).attributes
    assert (view["name"], view["description"]) == ("311 requests", "MyLA311 requests")
    assert view["publicationStage"] == "published"


def test_a_dataset_made_by_a_revision_is_private_until_made_public(
    socrata_tls: SocrataServer, publisher: Socrata
) -> None:
    fourfour = create(publisher, rows_of("open", 2))
    url, ca = f"{socrata_tls.url}/resource/{fourfour}.json", str(socrata_tls.tls.ca)  # type: ignore[union-attr]
    assert requests.get(url, verify=ca, timeout=10).status_code == 403

    revision = publisher.views.lookup(fourfour).revisions.create_replace_revision(
        permission="public"
    )
    revision.apply().wait_for_finish(**POLL)  # a metadata-only revision: no output schema

    anonymous = requests.get(url, verify=ca, timeout=10)
    assert anonymous.status_code == 200
    assert len(anonymous.json()) == 2  # the rows stay: no output schema, no row change


def test_socratapy_replaces_the_rows_through_a_revision(
    socrata_tls: SocrataServer, publisher: Socrata
) -> None:
    fourfour = create(publisher, rows_of("open", 5))
    revision, output = replace(publisher, fourfour, rows_of("closed", 2))
    assert output.attributes["error_count"] == 0

    job = revision.apply(output_schema=output).wait_for_finish(**POLL)

    assert job.attributes["status"] == "successful"
    rows = read(socrata_tls, fourfour).json()
    assert [(r["request_id"], r["status"]) for r in rows] == [
        ("R000000", "closed"),
        ("R000001", "closed"),
    ]
    assert revision.show().attributes["closed_at"] is not None
    assert [j["status"] for j in revision.attributes["task_sets"]] == ["successful"]


def test_an_output_schema_counts_the_values_that_do_not_fit_the_dataset_types(
    socrata_tls: SocrataServer, publisher: Socrata
) -> None:
    fourfour = create(publisher, rows_of("open", 3))
    bad = [
        "R1,open,2024-01-02T03:04:05,false,12",
        "R2,open,not a date,false,twelve",
        "R3,open,2024-01-02T03:04:05,maybe,7",
    ]
    revision, output = replace(publisher, fourfour, bad)

    assert output.attributes["error_count"] == 3
    assert output.any_errors()
    per_column = {
        c["field_name"]: c["transform"]["error_count"] for c in output.attributes["output_columns"]
    }
    assert per_column == {"request_id": 0, "status": 0, "opened": 1, "closed": 1, "count": 1}
    errors = output.schema_errors()
    assert [e["request_id"] for e in errors] == [{"ok": "R2"}, {"ok": "R3"}]
    assert errors[0]["count"] == {"error": {"message": "cannot convert to number"}}
    assert "twelve" not in str(errors)  # the message names the type, never the value

    # The dataset keeps its types: the bad file did not retype a column.
    types = read(socrata_tls, fourfour, **{"$limit": 1}).headers["X-SODA2-Types"]
    assert types == '["text","text","floating_timestamp","boolean","number"]'
    # Applied anyway, the rows with an error are left out, as the DSMAPI does.
    revision.apply(output_schema=output).wait_for_finish(**POLL)
    assert [r["request_id"] for r in read(socrata_tls, fourfour).json()] == ["R1"]


def test_chunks_sent_concurrently_in_small_pieces_arrive_whole(
    socrata_tls: SocrataServer, publisher: Socrata
) -> None:
    socrata_tls.app.publishing.chunk_size = 97  # ~220 chunks over 4 threads, in any order
    rows = rows_of("open", 400)
    fourfour = create(publisher, rows)

    got = read(socrata_tls, fourfour).json()
    assert len(got) == 400
    assert [r["request_id"] for r in got] == [r.split(",")[0] for r in rows]
    assert {r["count"] for r in got} == {str(i) for i in range(400)}


def test_a_commit_with_a_missing_chunk_is_refused(
    socrata_tls: SocrataServer, publisher: Socrata
) -> None:
    fourfour = create(publisher, rows_of("open", 1))
    revision = publisher.views.lookup(fourfour).revisions.create_replace_revision()
    source = revision.create_upload("gap.csv")
    source.initiate("text/csv")
    data = (HEADER + "R1,open,2024-01-02T03:04:05,false,1\n").encode()
    # Chunk 1 first, then commit without chunk 0: out of order is fine, missing is not.
    source.chunk(1, 10, data[10:])
    with pytest.raises(UnexpectedResponseException) as refused:
        source.commit(1, len(data))
    assert refused.value.status == 400
    assert "chunks [0]" in refused.value.body["message"]


def test_wrong_credentials_are_refused_with_401(socrata_tls: SocrataServer) -> None:
    intruder = Socrata(socratapy_auth(socrata_tls, password="wrong"))
    with pytest.raises(UnexpectedResponseException) as refused:
        intruder.new({"name": "nope"})
    assert refused.value.status == 401
    assert refused.value.body["code"] == "authentication_required"
    assert "wrong" not in str(refused.value.body)


@pytest.mark.parametrize(
    ("before", "after"),
    [(3000, 4000), pytest.param(100_000, 99_000, marks=pytest.mark.slow, id="100k")],
)
def test_a_concurrent_reader_never_sees_a_half_applied_replace(
    socrata_tls: SocrataServer, publisher: Socrata, before: int, after: int
) -> None:
    fourfour = create(publisher, rows_of("old", before))
    revision, output = replace(publisher, fourfour, rows_of("new", after))
    seen: list[tuple[int, frozenset[str]]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            rows = read(socrata_tls, fourfour, **{"$select": "status", "$limit": 200_000}).json()
            seen.append((len(rows), frozenset(r["status"] for r in rows)))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        socrata_tls.app.publishing.apply_delay = 0.3  # reads run before, during and after
        revision.apply(output_schema=output).wait_for_finish(**POLL)
        final = read(socrata_tls, fourfour, **{"$select": "status", "$limit": 200_000}).json()
    finally:
        stop.set()
        thread.join(timeout=60)

    assert (len(final), {r["status"] for r in final}) == (after, {"new"})
    old, new = (before, frozenset({"old"})), (after, frozenset({"new"}))
    assert set(seen) <= {old, new}, set(seen)
    assert old in seen  # the reader ran while the job was open, not only after it


def test_transforms_set_types_descriptions_and_the_row_id_then_an_update_upserts(
    socrata_tls: SocrataServer, publisher: Socrata
) -> None:
    revision, output = publisher.create(name="typed").csv(csv_file(rows_of("open", 3)))
    output = (
        output.change_column_transform("count")
        .to("`count`")  # kept as text, not the guessed number
        .change_column_metadata("status", "description")
        .to("Where the request stands")
        .change_column_metadata("opened", "display_name")
        .to("Opened at")
        .run()
        .set_row_id("request_id")
    )
    revision.apply(output_schema=output).wait_for_finish(**POLL)
    fourfour = revision.attributes["fourfour"]

    view = publisher.views.lookup(fourfour).attributes
    columns = {c["fieldName"]: c for c in view["columns"]}
    assert columns["status"]["description"] == "Where the request stands"
    assert columns["opened"]["name"] == "Opened at"
    assert columns["count"]["dataTypeName"] == "text"
    assert view["rowIdentifierColumnId"] == columns["request_id"]["id"]

    update = publisher.views.lookup(fourfour).revisions.create_update_revision()
    changed = [
        "R000001,closed,2024-01-02T03:04:05,true,1",
        "R000009,open,2024-02-01T00:00:00,false,9",
    ]
    source = update.create_upload("update.csv").csv(csv_file(changed))
    output = source.get_latest_input_schema().get_latest_output_schema().wait_for_finish(**POLL)
    assert [c["is_primary_key"] for c in output.attributes["output_columns"]][0] is True
    update.apply(output_schema=output).wait_for_finish(**POLL)

    rows = {r["request_id"]: r["status"] for r in read(socrata_tls, fourfour).json()}
    assert rows == {"R000000": "open", "R000001": "closed", "R000002": "open", "R000009": "open"}


def test_an_unsupported_transform_is_a_400_naming_it(publisher: Socrata) -> None:
    _, output = publisher.create(name="expr").csv(csv_file(rows_of("open", 1)))
    with pytest.raises(UnexpectedResponseException) as refused:
        output.change_column_transform("count").to("to_number(`count`) * 2").run()
    assert refused.value.status == 400
    assert "to_number(`count`) * 2" in refused.value.body["message"]


def test_publishing_calls_are_throttled_with_429_then_go_through(
    socrata_tls: SocrataServer, publisher: Socrata
) -> None:
    socrata_tls.throttle(1, retry_after=7)
    with pytest.raises(UnexpectedResponseException) as throttled:
        publisher.new({"name": "too fast"})
    assert throttled.value.status == 429
    assert throttled.value.body["code"] == "too_many_requests"
    assert publisher.new({"name": "after the wait"}).attributes["revision_seq"] == 0


def test_publishing_without_credentials_is_403(socrata_tls: SocrataServer) -> None:
    assert socrata_tls.tls is not None
    response = requests.post(
        f"{socrata_tls.url}/api/publishing/v1/revision",
        json={"metadata": {"name": "anonymous"}},
        verify=str(socrata_tls.tls.ca),
        timeout=10,
    )
    assert response.status_code == 403
    assert response.json()["error"] is True
