"""Alerts: tell a dataset's stewards when its state changes, once per change.

``notify_run`` is called after each run is recorded in the ledger, ``notify_freshness``
after each freshness check. Each compares the dataset's state with the last state every
channel was told (``civicflow.alerts.state``), and only a change sends a message
(``message``) by e-mail and webhook (``channels``); with neither configured, one INFO
log line. Alerts never fail a run: a channel that cannot deliver is logged as a
warning and its state is not advanced, so the alert is retried after the next run.
"""

from __future__ import annotations

import logging
import smtplib
import sqlite3
from collections.abc import Callable

import httpx

from civicflow.alerts.channels import (
    SECRET_NAMES,
    Channel,
    ChannelError,
    LogChannel,
    email_channel,
    webhook_channel,
)
from civicflow.alerts.message import Alert, describe_age, freshness_alert, run_alert
from civicflow.alerts.state import (
    AlertStore,
    Aspect,
    State,
    Transition,
    failing_streak,
    freshness_state,
    run_state,
    transition,
)
from civicflow.ledger import Ledger, RunRecord
from civicflow.settings import Settings, SettingsError
from civicflow.spec.models import DatasetSpec

__all__ = ["SECRET_NAMES", "describe_age", "notify_freshness", "notify_run"]

log = logging.getLogger("civicflow.alerts")

_DELIVERY_ERRORS = (ChannelError, OSError, smtplib.SMTPException, httpx.HTTPError)
Build = Callable[[Transition], Alert]


def notify_run(settings: Settings, spec: DatasetSpec, record: RunRecord) -> list[str]:
    """Alert the stewards if ``record`` (already in the ledger) changed the run state.

    Returns what was sent (``"webhook: failing"``, ...), for the run's log.
    """

    def build(moved: Transition) -> Alert:
        since, count = failing_streak(Ledger(settings.ledger_path), record)
        return run_alert(spec, moved, record, since, count)

    return _guarded(settings, spec, "run", run_state(record), record.run_id, build)


def notify_freshness(
    settings: Settings, spec: DatasetSpec, stale: bool | None, age: str
) -> list[str]:
    """Alert the stewards if the dataset went stale or is fresh again.

    ``age`` is how old its data is, in words (``describe_age(freshness.age)``); ``stale``
    None (unknown) sends nothing. Returns what was sent.
    """

    def build(moved: Transition) -> Alert:
        return freshness_alert(spec, moved, age)

    return _guarded(settings, spec, "freshness", freshness_state(stale), None, build)


def _guarded(
    settings: Settings,
    spec: DatasetSpec,
    aspect: Aspect,
    now: State | None,
    run_id: str | None,
    build: Build,
) -> list[str]:
    """``_notify``, with any failure logged: an alert never fails the run it is about."""
    if now is None:
        return []
    try:
        return _notify(settings, spec, aspect, now, run_id, build)
    except (sqlite3.Error, OSError) as exc:
        log.warning("%s: alert state unavailable, nothing sent (%s)", spec.id, _kind(exc))
    except Exception as exc:  # a bug here must not turn a recorded run into a crash
        log.warning("%s: alert not sent: unexpected %s", spec.id, type(exc).__name__)
    return []


def _notify(
    settings: Settings,
    spec: DatasetSpec,
    aspect: Aspect,
    now: State,
    run_id: str | None,
    build: Build,
) -> list[str]:
    store = AlertStore(settings.ledger_path)
    built: dict[tuple[str, str], Alert] = {}
    sent = []
    channels = _channels(settings, spec)
    for channel in channels:
        last = store.last(spec.id, aspect, channel.name)
        moved = transition(aspect, last, now)
        if moved is None:
            continue
        key = (moved.before, moved.after)
        if key not in built:
            built[key] = build(moved)
        try:
            what = channel.send(built[key])
        except _DELIVERY_ERRORS as exc:
            log.warning(
                "%s: %s alert (%s) not delivered: %s; retried after the next run",
                spec.id,
                channel.name,
                moved.change,
                _kind(exc),
            )
            continue
        store.advance(spec.id, aspect, channel.name, now, run_id)
        sent.append(f"{what}: {moved.change}")
    if sent and not isinstance(channels[0], LogChannel):  # the log channel said it already
        log.info("%s: alerted %s", spec.id, "; ".join(sent))
    return sent


def _channels(settings: Settings, spec: DatasetSpec) -> list[Channel]:
    """The configured channels; a misconfigured one is skipped with a warning."""
    found: list[Channel] = []
    broken = False
    for make in (lambda: email_channel(settings, spec), lambda: webhook_channel(settings)):
        try:
            channel = make()
        except SettingsError as exc:  # names the variable, never a secret value
            log.warning("%s: alert channel not configured: %s", spec.id, exc)
            broken = True
            continue
        if channel is not None:
            found.append(channel)
    return found if found or broken else [LogChannel()]


def _kind(exc: BaseException) -> str:
    """A delivery error in words without its text (which may quote a URL or a reply)."""
    if isinstance(exc, ChannelError):
        return str(exc)
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"SMTP {exc.smtp_code} ({type(exc).__name__})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__
