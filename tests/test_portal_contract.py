"""The Portal protocol, checked the same way for every registered portal kind.

Each kind supplies a ``<kind>_contract_portal`` fixture (see tests/fixtures/portal.py)
returning a PortalUnderTest backed by a real server; a registered kind without one
fails here rather than going untested.
"""

from __future__ import annotations

import pytest

from civicflow import published
from civicflow.portals import METADATA, PortalConflict, published_version, registered_portals
from tests.fixtures.portal import (
    SAMPLE_FIELDS,
    PortalUnderTest,
    sample_frame,
    sample_metadata,
    unique_table,
)


@pytest.fixture(params=registered_portals())
def under_test(request: pytest.FixtureRequest) -> PortalUnderTest:
    fixture: PortalUnderTest = request.getfixturevalue(f"{request.param}_contract_portal")
    assert fixture.portal.kind == request.param
    return fixture


def _publish(
    under_test: PortalUnderTest,
    table: str,
    frame,
    run_id: str,
    title: str = "Sample requests",
    **kwargs,
):
    return under_test.portal.publish(
        table,
        frame,
        fields=SAMPLE_FIELDS,
        primary_key=["id"],
        version=published.content_version(frame),
        run_id=run_id,
        metadata=sample_metadata(title),
        **kwargs,
    )


def _version(frame, title: str = "Sample requests") -> str:
    """The published version: the rows' hash and the metadata together."""
    return published_version(published.content_version(frame), sample_metadata(title))


def test_unpublished_table_has_no_version(under_test: PortalUnderTest) -> None:
    assert under_test.portal.current_version(unique_table("never")) is None


def test_publish_then_current_version(under_test: PortalUnderTest) -> None:
    table = unique_table()
    frame = sample_frame(1_234, "first")
    result = _publish(under_test, table, frame, "run-1")
    version = _version(frame)
    assert (result.table, result.version, result.rows, result.changed) == (
        table,
        version,
        len(frame),
        True,
    )
    assert result.url == under_test.portal.table_url(table)
    live = under_test.portal.current_version(table)
    assert live is not None
    assert (live.table, live.version, live.rows, live.run_id) == (
        table,
        version,
        len(frame),
        "run-1",
    )
    assert under_test.row_count(table) == len(frame)


def test_same_version_is_unchanged(under_test: PortalUnderTest) -> None:
    table = unique_table()
    frame = sample_frame(300, "first")
    _publish(under_test, table, frame, "run-1")
    before = under_test.portal.current_version(table)
    again = _publish(under_test, table, frame, "run-2")
    assert again.changed is False
    assert again.rows == len(frame)
    assert under_test.portal.current_version(table) == before  # run-1 still recorded as live


def test_new_version_replaces_the_old(under_test: PortalUnderTest) -> None:
    table = unique_table()
    _publish(under_test, table, sample_frame(500, "first"), "run-1")
    second = sample_frame(200, "second", seed=1)
    result = _publish(under_test, table, second, "run-2")
    assert result.changed is True
    live = under_test.portal.current_version(table)
    assert live is not None
    assert (live.version, live.rows, live.run_id) == (_version(second), 200, "run-2")
    assert live.data_version == published.content_version(second)
    assert under_test.row_count(table) == 200


def test_metadata_reaches_the_portal(under_test: PortalUnderTest) -> None:
    if METADATA not in under_test.portal.capabilities:
        pytest.skip(f"{under_test.portal.kind} does not declare the metadata capability")
    table = unique_table()
    _publish(under_test, table, sample_frame(10, "first"), "run-1", title="First title")
    _publish(under_test, table, sample_frame(10, "second"), "run-2", title="Second title")
    expected = sample_metadata("Second title")
    got = under_test.metadata(table)
    assert got["title"] == "Second title"
    assert got["description"] == expected.description
    assert got["license"] == expected.license
    assert got["source"] == expected.source
    assert got["columns"] == expected.columns


def test_a_metadata_edit_is_a_new_version_with_the_same_rows(under_test: PortalUnderTest) -> None:
    """Issue 8 item 8: a new title alone used to report "unchanged"."""
    if METADATA not in under_test.portal.capabilities:
        pytest.skip(f"{under_test.portal.kind} does not declare the metadata capability")
    table = unique_table()
    frame = sample_frame(50, "first")
    first = _publish(under_test, table, frame, "run-1", title="First title")
    edited = _publish(under_test, table, frame, "run-2", title="Edited title")
    assert edited.changed is True and edited.version != first.version
    assert edited.version == _version(frame, "Edited title")
    live = under_test.portal.current_version(table)
    assert live is not None and (live.version, live.run_id, live.rows) == (
        edited.version,
        "run-2",
        50,
    )
    assert live.data_version == published.content_version(frame)
    assert under_test.metadata(table)["title"] == "Edited title"
    assert under_test.row_count(table) == 50
    again = _publish(under_test, table, frame, "run-3", title="Edited title")
    assert again.changed is False


def test_a_publish_from_a_stale_base_is_refused_naming_the_other_run(
    under_test: PortalUnderTest,
) -> None:
    """Issue 8 item 7: compare-and-swap on the live version."""
    table = unique_table()
    _publish(under_test, table, sample_frame(40, "first"), "run-1")
    started_from = under_test.portal.current_version(table)
    _publish(under_test, table, sample_frame(30, "second", seed=1), "run-2")
    with pytest.raises(PortalConflict, match="run-2") as refused:
        _publish(under_test, table, sample_frame(20, "third", seed=2), "run-3", base=started_from)
    assert refused.value.other_run == "run-2"
    live = under_test.portal.current_version(table)
    assert live is not None and (live.run_id, live.rows) == ("run-2", 30)
    assert under_test.row_count(table) == 30
