"""The Socrata test server over raw HTTP: the SoQL subset, bodies without a Content-Type,
CSV uploads, error shapes, throttling over its control endpoint, and a replace that a
concurrent reader sees whole or not at all."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from tests.socrata import soql
from tests.socrata.fixtures import (
    KEY_ID,
    KEY_SECRET,
    SocrataServer,
    start_server,
)
from tests.socrata.store import Query, Store

AUTH = (KEY_ID, KEY_SECRET)
COLUMNS = [("name", "text"), ("n", "number"), ("note", "text")]
ROWS: list[dict[str, Any]] = [
    {"name": "O'Brien", "n": 10, "note": "x"},
    {"name": "Alvarez", "n": 2},
    {"name": "Baker", "n": 33, "note": "y"},
    {"name": "Chen", "n": -4, "note": "x"},
]


@pytest.fixture
def dataset(socrata: SocrataServer) -> str:
    return socrata.create_dataset(COLUMNS, ROWS, row_identifier="name").id


def get(server: SocrataServer, dataset_id: str, **params: str) -> requests.Response:
    return requests.get(f"{server.url}/resource/{dataset_id}.json", params=params, timeout=30)


def names(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["name"] for row in response.json()]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("name = 'O''Brien'", ["O'Brien"]),  # '' is a quote inside a string
        ("n > 5 AND note = 'x'", ["O'Brien"]),
        ("n < 0 OR n > 30 AND note = 'y'", ["Baker", "Chen"]),  # AND binds tighter than OR
        ("(n < 0 OR n > 30) AND note = 'y'", ["Baker"]),
        ("NOT note = 'x'", ["Baker"]),  # NULL compares as unknown, so Alvarez is out
        ("note IS NULL", ["Alvarez"]),
        ("note IS NOT NULL AND n <> 10", ["Baker", "Chen"]),
        ("n >= 2.5", ["O'Brien", "Baker"]),  # numbers compare as numbers, not as text
    ],
)
def test_where(socrata: SocrataServer, dataset: str, where: str, expected: list[str]) -> None:
    assert names(get(socrata, dataset, **{"$where": where, "$order": ":id"})) == expected


@pytest.mark.parametrize(
    "where",
    [
        "n = 1; drop table x",
        "__import__('os').system('true') = 1",
        "upper(name) = 'CHEN'",
        "name = 'unterminated",
        "missing_column = 1",
        "n = ",
        "(n = 1",
    ],
)
def test_unsupported_where_is_a_socrata_400(
    socrata: SocrataServer, dataset: str, where: str
) -> None:
    response = get(socrata, dataset, **{"$where": where})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "query.compiler.malformed" and body["error"] is True


def test_order_select_limit_offset(socrata: SocrataServer, dataset: str) -> None:
    response = get(
        socrata, dataset, **{"$select": "name,n", "$order": "n DESC", "$limit": "2", "$offset": "1"}
    )
    assert response.json() == [{"name": "O'Brien", "n": "10"}, {"name": "Alvarez", "n": "2"}]
    assert json.loads(response.headers["X-SODA2-Fields"]) == ["name", "n"]
    assert json.loads(response.headers["X-SODA2-Types"]) == ["text", "number"]
    assert names(get(socrata, dataset, **{"$order": ":id DESC", "$limit": "1"})) == ["Chen"]
    assert get(socrata, dataset, **{"$offset": "99"}).json() == []


def test_system_fields_on_request(socrata: SocrataServer, dataset: str) -> None:
    rows = get(socrata, dataset, **{"$$exclude_system_fields": "false", "$order": ":id"}).json()
    assert set(rows[0]) == {"name", "n", "note", ":id", ":created_at", ":updated_at"}
    assert [r[":id"] for r in rows] == sorted(r[":id"] for r in rows)


def test_bad_paging_is_a_400(socrata: SocrataServer, dataset: str) -> None:
    assert get(socrata, dataset, **{"$limit": "ten"}).status_code == 400
    assert get(socrata, dataset, **{"$offset": "-1"}).status_code == 400


def test_json_body_without_content_type_and_csv_body(socrata: SocrataServer, dataset: str) -> None:
    url = f"{socrata.url}/resource/{dataset}.json"
    sent = requests.post(url, data=b'[{"name": "Diaz", "n": 5}]', auth=AUTH, timeout=30)
    assert "Content-Type" not in sent.request.headers  # as sodapy 2.2.0 sends its JSON
    assert sent.json()["Rows Created"] == 1
    csv_body = "name,n,note\nDiaz,6,\nEvans,7,z\n"
    sent = requests.post(
        url, data=csv_body, auth=AUTH, headers={"Content-Type": "text/csv"}, timeout=30
    )
    assert (sent.json()["Rows Created"], sent.json()["Rows Updated"]) == (1, 1)
    rows = {r["name"]: r for r in get(socrata, dataset, **{"$where": "n >= 5 AND n <= 7"}).json()}
    assert rows == {
        "Diaz": {"name": "Diaz", "n": "6"},
        "Evans": {"name": "Evans", "n": "7", "note": "z"},
    }


def test_unknown_field_in_a_write_names_it(socrata: SocrataServer, dataset: str) -> None:
    url = f"{socrata.url}/resource/{dataset}.json"
    response = requests.post(url, json=[{"name": "Diaz", "colour": "red"}], auth=AUTH, timeout=30)
    assert response.status_code == 400
    assert "row 0" in response.json()["message"] and "'colour'" in response.json()["message"]


def test_missing_dataset_errors_as_recorded(socrata: SocrataServer) -> None:
    rows = requests.get(f"{socrata.url}/resource/zzzz-9999.csv", timeout=30)
    assert rows.status_code == 404 and rows.json()["code"] == "dataset.missing"
    view = requests.get(f"{socrata.url}/api/views/zzzz-9999.json", timeout=30)
    assert view.status_code == 404 and view.json()["code"] == "not_found"
    assert (view.headers["X-Error-Code"], view.headers["X-Error-Message"]) == (
        "not_found",
        "Not found",
    )


def test_throttle_over_the_control_endpoint(socrata: SocrataServer, dataset: str) -> None:
    control = requests.post(
        f"{socrata.url}/__test__/throttle", json={"requests": 2, "retry_after": 5}, timeout=30
    )
    assert control.status_code == 204
    first, second, third = (get(socrata, dataset) for _ in range(3))
    assert [first.status_code, second.status_code, third.status_code] == [429, 429, 200]
    assert first.headers["Retry-After"] == "5"
    assert first.json()["code"] == "too_many_requests"


def test_a_replace_is_seen_whole_by_a_concurrent_reader(socrata: SocrataServer) -> None:
    """Every read during a 20,000-row replace sees all old rows or all new ones."""
    size = 20_000
    old = [{"name": f"r{i}", "n": 1} for i in range(size)]
    target = socrata.create_dataset(COLUMNS, old, row_identifier="name").id
    seen: list[tuple[int, frozenset[str]]] = []
    done = threading.Event()

    def read(session: requests.Session) -> tuple[int, frozenset[str]]:
        rows = session.get(
            f"{socrata.url}/resource/{target}.json",
            params={"$select": "n", "$limit": str(size * 2)},
            timeout=60,
        ).json()
        return len(rows), frozenset(r["n"] for r in rows)

    def reader() -> None:
        with requests.Session() as session:
            while not done.is_set():
                seen.append(read(session))

    thread = threading.Thread(target=reader)
    thread.start()
    new: list[dict[str, Any]] = [{"name": f"r{i}", "n": 2} for i in range(size)]
    # The server runs the write in a worker thread, so reads are served while it runs.
    response = requests.put(
        f"{socrata.url}/resource/{target}.json", json=new, auth=AUTH, timeout=120
    )
    done.set()
    thread.join(timeout=120)
    assert response.json()["Rows Created"] == size
    assert seen and all(
        view in {(size, frozenset({"1"})), (size, frozenset({"2"}))} for view in seen
    )
    with requests.Session() as session:
        assert read(session) == (size, frozenset({"2"}))


_value = st.one_of(st.integers(-50, 50), st.none())


@given(
    values=st.lists(_value, max_size=12),
    op=st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
    bound=st.integers(-50, 50),
)
def test_where_agrees_with_a_python_oracle(values: list[int | None], op: str, bound: int) -> None:
    """Numeric comparisons match Python's, and a NULL never matches (SQL semantics)."""
    oracle = {
        "=": lambda a: a == bound,
        "!=": lambda a: a != bound,
        "<": lambda a: a < bound,
        "<=": lambda a: a <= bound,
        ">": lambda a: a > bound,
        ">=": lambda a: a >= bound,
    }[op]
    predicate = soql.parse_where(f"n {op} {bound}", {"n": "number"})
    rows = [{} if v is None else {"n": str(v)} for v in values]
    assert [predicate(r) is True for r in rows] == [v is not None and oracle(v) for v in values]


def test_simple_equality_filters(socrata: SocrataServer, dataset: str) -> None:
    assert names(get(socrata, dataset, note="x", **{"$order": ":id"})) == ["O'Brien", "Chen"]
    assert names(get(socrata, dataset, name="O'Brien", n="10")) == ["O'Brien"]
    assert get(socrata, dataset, colour="red").status_code == 400


@pytest.mark.parametrize("param", ["$group", "$q", "$query", "$having", "$bogus"])
def test_unsupported_soql_is_refused_not_ignored(
    socrata: SocrataServer, dataset: str, param: str
) -> None:
    response = get(socrata, dataset, **{param: "name"})
    assert response.status_code == 400
    assert param in response.json()["message"]


def test_app_token_as_a_parameter(socrata: SocrataServer, dataset: str) -> None:
    assert get(socrata, dataset, **{"$$app_token": "test-app-token"}).status_code == 200
    assert get(socrata, dataset, **{"$$app_token": "not-a-token"}).status_code == 403


def test_an_outage_keeps_the_data() -> None:
    """stop()/start(): the port refuses connections, then serves the same datasets again."""
    server = start_server()
    try:
        target = server.create_dataset(COLUMNS, ROWS, row_identifier="name").id
        server.stop()
        with pytest.raises(requests.ConnectionError):
            get(server, target)
        server.start()
        assert sorted(names(get(server, target))) == sorted(r["name"] for r in ROWS)
    finally:
        server.stop()


_ops = st.lists(
    st.tuples(
        st.sampled_from(["upsert", "delete", "replace"]), st.lists(st.integers(0, 6), max_size=5)
    ),
    max_size=8,
)


@given(ops=_ops)
def test_writes_agree_with_a_dict_model(ops: list[tuple[str, list[int]]]) -> None:
    """Any run of upserts, :deleted rows and replaces leaves exactly what a dict would hold,
    and each response counts what changed."""
    store = Store()
    target = store.create(COLUMNS, row_identifier="name")
    model: dict[str, str] = {}
    for step, (op, keys) in enumerate(ops):
        names_ = {f"k{k}" for k in keys}
        before = set(model)
        if op == "replace":
            result = store.replace(target, [{"name": f"k{k}", "n": step} for k in keys])
            model = dict.fromkeys(names_, str(step))
            assert result.created == len(names_)
        elif op == "delete":
            result = store.upsert(target, [{"name": f"k{k}", ":deleted": True} for k in keys])
            model = {k: v for k, v in model.items() if k not in names_}
            assert result.deleted == len(before - set(model))
        else:
            result = store.upsert(target, [{"name": f"k{k}", "n": step} for k in keys])
            model.update(dict.fromkeys(names_, str(step)))
            assert result.created == len(set(model) - before)
    _, got = store.query(target, Query(limit=100))
    assert {r["name"]: r["n"] for r in got} == model
