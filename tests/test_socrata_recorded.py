"""The Socrata test server checked against responses recorded from a real Socrata portal.

Every request in tests/socrata/recorded/*.yaml (see its SOURCE.md) is replayed against the
test server loaded with datasets of the recorded shape: the same ids, columns, types and row
identifier as the recorded view document (or, where no view was recorded, as the recorded
X-SODA2-Fields/Types headers), holding the recorded rows. Compared: status, content type,
the headers clients read, and the body's shape (keys and value types) and row count.
Where they disagree the recordings win: the server is fixed, not this test.
"""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from tests.socrata.fixtures import SocrataServer

RECORDED = Path(__file__).parent / "socrata" / "recorded"
CASSETTES = sorted(p.name for p in RECORDED.glob("*.yaml"))
# Headers a client acts on: sodapy reads Content-Type; SODA clients type columns from the
# X-SODA2 pair; error handlers read X-Error-*.
EXACT_HEADERS = (
    "content-type",
    "x-soda2-fields",
    "x-soda2-types",
    "x-error-code",
    "x-error-message",
    "content-disposition",
)
PRESENT_HEADERS = ("x-soda2-truth-last-modified", "last-modified")
# View-document parts the test server does not model (per-column display formats, approval
# history): compared as "present with the same type". A column's display width is absent
# on some recorded columns itself, so it may be absent.
UNMODELLED = {"format", "approvals"}
OPTIONAL = {"width"}


@functools.cache
def interactions(name: str) -> list[dict[str, Any]]:
    # The C loader: the largest cassette is 1.4 MB of YAML.
    loaded: dict[str, Any] = yaml.load((RECORDED / name).read_text(), Loader=yaml.CSafeLoader)
    return list(loaded["interactions"])


def body_bytes(response: dict[str, Any]) -> bytes:
    """A recorded body as the client saw it: text, or bytes that may still be gzip."""
    raw = response["body"]["string"]
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def recorded_view() -> dict[str, Any]:
    first = interactions("test_get_metadata_and_attachments.yaml")[0]
    view: dict[str, Any] = json.loads(body_bytes(first["response"]))
    return view


def recorded_rows(name: str, path: str) -> Iterator[dict[str, Any]]:
    for interaction in interactions(name):
        if urlsplit(interaction["request"]["uri"]).path == path:
            yield from json.loads(body_bytes(interaction["response"]))


def load_bicycle_counts(server: SocrataServer) -> None:
    """uczf-rk3c as recorded: its view's columns and metadata, the 2,000 recorded rows."""
    view = recorded_view()
    columns = [(c["fieldName"], c["dataTypeName"]) for c in view["columns"]]
    row_id = next(
        c["fieldName"] for c in view["columns"] if c["id"] == view["rowIdentifierColumnId"]
    )
    described = {k: view[k] for k in ("attribution", "category", "description", "tags")}
    described["metadata"] = {"custom_fields": view["metadata"]["custom_fields"]}
    dataset = server.create_dataset(
        columns,
        recorded_rows("test_get_all.yaml", "/resource/uczf-rk3c.json"),
        dataset_id=view["id"],
        name=view["name"],
        row_identifier=row_id,
        view=described,
    )
    for column, recorded in zip(dataset.columns, view["columns"], strict=True):
        column.name, column.description = recorded["name"], recorded["description"]
    for attachment, download in zip(
        view["metadata"]["attachments"], attachment_downloads(), strict=True
    ):
        dataset.attachments[attachment["assetId"]] = (attachment["filename"], download)


def attachment_downloads() -> list[bytes]:
    return [
        body_bytes(i["response"])
        for i in interactions("test_get_metadata_and_attachments.yaml")
        if "/files/" in i["request"]["uri"]
    ]


def load_population(server: SocrataServer) -> None:
    """xywu-7bv9 has no recorded view: its shape comes from the recorded X-SODA2 headers."""
    (interaction,) = [
        i for i in interactions("test_get_all_hit_limit.yaml") if "xywu-7bv9" in i["request"]["uri"]
    ]
    headers = interaction["response"]["headers"]
    fields = json.loads(headers["X-SODA2-Fields"][0])
    types = json.loads(headers["X-SODA2-Types"][0])
    rows = json.loads(body_bytes(interaction["response"]))
    server.create_dataset(list(zip(fields, types, strict=True)), rows, dataset_id="xywu-7bv9")


@pytest.fixture(scope="module")
def loaded(socrata_server: SocrataServer) -> SocrataServer:
    load_bicycle_counts(socrata_server)
    load_population(socrata_server)
    return socrata_server


def shape(value: Any, key: str = "") -> Any:
    """Keys and value types; lists by their first element; unmodelled parts by type only."""
    if key in UNMODELLED:
        return type(value).__name__
    if isinstance(value, dict):
        return {k: shape(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return ["list", shape(value[0]) if value else None]
    return type(value).__name__


def assert_same_shape(recorded: Any, served: Any, where: str) -> None:
    if isinstance(recorded, dict):
        assert isinstance(served, dict), f"{where}: object expected, got {served!r}"
        assert set(served) - OPTIONAL == set(recorded) - OPTIONAL, f"{where}: keys differ"
        for key in set(recorded) & set(served):
            assert_same_shape(recorded[key], served[key], f"{where}.{key}")
    elif isinstance(recorded, list):
        assert isinstance(served, list), f"{where}: array expected, got {served!r}"
        if recorded[1] is not None and served[1] is not None:  # an empty array fits any
            assert_same_shape(recorded[1], served[1], f"{where}[0]")
    else:
        assert served == recorded, f"{where}: {recorded} recorded, {served} served"


def replay(
    session: requests.Session, server: SocrataServer, interaction: dict[str, Any]
) -> requests.Response:
    request = interaction["request"]
    parts = urlsplit(request["uri"])
    headers = {k: v[0] for k, v in request["headers"].items() if k.lower() != "host"}
    url = f"{server.url}{parts.path}" + (f"?{parts.query}" if parts.query else "")
    return session.request(
        request["method"], url, headers=headers, data=request["body"], timeout=30
    )


def compare(recorded: dict[str, Any], served: requests.Response, where: str) -> None:
    assert served.status_code == recorded["status"]["code"], where
    headers = {k.lower(): v[0] for k, v in recorded["headers"].items()}
    for name in EXACT_HEADERS:
        assert served.headers.get(name) == headers.get(name), f"{where}: header {name}"
    for name in PRESENT_HEADERS:
        assert (name in served.headers) == (name in headers), f"{where}: header {name}"
    body = body_bytes(recorded)
    if headers["content-type"] == "application/octet-stream":
        assert served.content == body, f"{where}: attachment bytes"
        return
    if headers["content-type"].startswith("text/csv"):
        recorded_lines, served_lines = body.decode().splitlines(), served.text.splitlines()
        assert served_lines[0] == recorded_lines[0], f"{where}: CSV header"
        assert len(served_lines) == len(recorded_lines), f"{where}: CSV row count"
        return
    expected, got = json.loads(body), served.json()
    if isinstance(expected, list):
        assert len(got) == len(expected), f"{where}: row count"
    assert_same_shape(shape(expected), shape(got), where)


@pytest.mark.parametrize("cassette", CASSETTES)
def test_recorded_responses_match(loaded: SocrataServer, cassette: str) -> None:
    """Each recorded request, replayed, gets a response of the recorded kind."""
    replayed = 0
    session = requests.Session()  # keep-alive, as sodapy's own session does
    for number, interaction in enumerate(interactions(cassette)):
        served = replay(session, loaded, interaction)
        compare(
            interaction["response"], served, f"{cassette}#{number} {interaction['request']['uri']}"
        )
        replayed += 1
    assert replayed > 0, f"{cassette}: nothing replayed"


def test_unpaged_read_returns_the_default_page_of_1000(loaded: SocrataServer) -> None:
    """As recorded: a GET without $limit returns 1,000 of the dataset's 2,000 rows."""
    rows = requests.get(f"{loaded.url}/resource/uczf-rk3c.json", timeout=30).json()
    assert len(rows) == 1000
    recorded = json.loads(body_bytes(interactions("test_get.yaml")[0]["response"]))
    assert rows == recorded  # same rows loaded, same default order
