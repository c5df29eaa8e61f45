"""Alerts once per state change, delivered to a real local SMTP server (aiosmtpd) and a
real local HTTP webhook receiver, from real ledger records and a real rejected run.

The rejected run reads a copy of the 311 data with a canary value planted in it: the
canary reaches the private report the alert points to, and no message.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from civicflow.alerts import describe_age, notify_freshness, notify_run
from civicflow.ledger import Ledger, RunRecord
from civicflow.pipeline import run_dataset
from civicflow.settings import Settings
from civicflow.spec import DatasetSpec, find_dataset
from tests.fixtures.portal import free_port

PROJECT = Path(__file__).resolve().parents[1]
CSV = PROJECT / "data" / "la311_service_requests" / "MyLA311_Service_Request_Data_2017_Subset.csv"
DATASET = "la311_service_requests"
CANARY = "CANARY-7Q2X-RAWVALUE"
SMTP_PASSWORD = "smtp-pass-CANARY-91f3"
WEBHOOK_TOKEN = "T0001/B0002/hooktokenCANARY55"
EXTRA_TO = "ops@city.example"


# -- a real SMTP server and a real webhook receiver ---------------------------------


@dataclass
class Mailbox:
    """What the local SMTP server received: parsed messages, raw bytes, logins."""

    messages: list[EmailMessage] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    logins: list[bytes] = field(default_factory=list)
    encrypted: list[bool] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.encrypted.append(session.ssl is not None)
        self.raw.append(envelope.content)
        self.recipients.append(list(envelope.rcpt_tos))
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password == SMTP_PASSWORD.encode()
        if ok:
            self.logins.append(data.login)
        return AuthResult(success=ok)


@dataclass
class Smtp:
    host: str
    port: int
    box: Mailbox


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    box = Mailbox()
    # auth without TLS is allowed on loopback only, as civicflow's channel does
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=box.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield Smtp("127.0.0.1", controller.port, box)
    finally:
        controller.stop()


@dataclass
class Webhook:
    """A local HTTP receiver; ``fail`` lists the status codes of the next answers."""

    url: str
    bodies: list[bytes] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    fail: list[int] = field(default_factory=list)

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(b) for b in self.bodies]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.paths.append(self.path)
            status = hook.fail.pop(0) if hook.fail else 200
            if status == 200:
                hook.bodies.append(body)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_port}/services/{WEBHOOK_TOKEN}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- settings, spec, ledger records -------------------------------------------------


def _env(smtp: Smtp | None = None, webhook: Webhook | None = None, **extra: str) -> dict[str, str]:
    env: dict[str, str] = {}
    if smtp is not None:
        env |= {
            "CIVICFLOW_SMTP_HOST": smtp.host,
            "CIVICFLOW_SMTP_PORT": str(smtp.port),
            "CIVICFLOW_ALERT_FROM": "civicflow@city.example",
            "CIVICFLOW_ALERT_EMAIL_TO": EXTRA_TO,
        }
    if webhook is not None:
        env["CIVICFLOW_ALERT_WEBHOOK_URL"] = webhook.url
    return env | extra


@pytest.fixture
def spec(project: Settings) -> DatasetSpec:
    return find_dataset(project.datasets_dir, DATASET)


@pytest.fixture(scope="module")
def rejected_run(tmp_path_factory: pytest.TempPathFactory) -> RunRecord:
    """A real run of the pipeline on 311 data with a canary in three rows: rejected."""
    root = tmp_path_factory.mktemp("rejected")
    for name in ("datasets", "expectations"):
        shutil.copytree(PROJECT / name, root / "project" / name)
    shutil.copy(PROJECT / "pyproject.toml", root / "project" / "pyproject.toml")
    frame = pd.read_csv(CSV, dtype=str, keep_default_na=False).head(500)
    frame.loc[frame.index[:3], "CD"] = CANARY
    bad = root / "bad.csv"
    frame.to_csv(bad, index=False)
    settings = Settings(
        project_dir=root / "project",
        var_dir=root / "var",
        portal_url=f"http://127.0.0.1:{free_port()}",  # a rejected run never publishes
        env={},
    )
    out = run_dataset(settings, DATASET, bad)
    assert out.outcome == "rejected", out.reason
    assert out.record.report_path is not None
    # the canary is in the private report the alert points to...
    assert CANARY in Path(out.record.report_path).read_text(encoding="utf-8")
    return out.record


_clock = count()


def _record(settings: Settings, like: RunRecord | None = None, **update: Any) -> RunRecord:
    """A run recorded in the test's ledger, each later than the last."""
    start = datetime(2026, 11, 23, 8, tzinfo=UTC) + timedelta(minutes=next(_clock))
    base = like or RunRecord(
        DATASET, "", start, start, "published", "published a new version", 500, 500, 40
    )
    record = replace(
        base,
        run_id=f"{start:%Y%m%dT%H%M%SZ}-{next(_clock):06x}",
        started_at=start,
        finished_at=start + timedelta(seconds=20),
        **update,
    )
    Ledger(settings.ledger_path).record(record)
    return record


def _published(settings: Settings) -> RunRecord:
    return _record(settings, portal_version="v3")


def _all_text(smtp: Smtp, hook: Webhook) -> str:
    return "\n".join(
        [b.decode("utf-8", "replace") for b in smtp.box.raw]
        + [m.get_content() for m in smtp.box.messages]
        + [b.decode("utf-8") for b in hook.bodies]
    )


# -- the tests ----------------------------------------------------------------------


def test_a_failure_alerts_once_and_the_fix_alerts_recovery(
    project: Settings, spec: DatasetSpec, rejected_run: RunRecord, smtp: Smtp, webhook: Webhook
) -> None:
    settings = replace(project, env=_env(smtp, webhook))
    assert notify_run(settings, spec, _published(settings)) == []  # ok -> ok: silence

    failing = _record(settings, rejected_run)
    sent = notify_run(settings, spec, failing)
    assert sent == ["e-mail to 2 recipients: failing", "webhook: failing"]
    assert len(smtp.box.messages) == 1 and len(webhook.payloads) == 1
    mail = smtp.box.messages[0]
    assert smtp.box.recipients[0] == [spec.steward.email, EXTRA_TO]
    assert f"{DATASET} is failing" in mail["Subject"]
    body = mail.get_content()
    for part in (
        spec.title,
        DATASET,
        failing.reason,
        "type-error on cd: 3 failing",
        failing.run_id,
    ):
        assert part in body
    assert str(failing.report_path) in body
    slack = webhook.payloads[0]
    assert DATASET in slack["text"] and slack["blocks"][0]["type"] == "header"
    blocks = json.dumps(slack["blocks"])
    assert "type-error on cd: 3 failing" in blocks and "REJECTED" in blocks

    # the same failure again: nothing new to say
    assert notify_run(settings, spec, _record(settings, rejected_run)) == []
    assert len(smtp.box.messages) == 1 and len(webhook.bodies) == 1

    fixed = _published(settings)
    assert notify_run(settings, spec, fixed) == [
        "e-mail to 2 recipients: recovered",
        "webhook: recovered",
    ]
    recovery = smtp.box.messages[1].get_content()
    assert f"{DATASET} recovered" in smtp.box.messages[1]["Subject"]
    assert "recovered after 2 failing runs since 2026-11-23" in recovery
    assert fixed.run_id in recovery and "portal version v3" in recovery
    assert "recovered" in webhook.payloads[1]["text"]
    assert notify_run(settings, spec, _published(settings)) == []
    # ...and no message ever held the canary from the rejected rows
    assert CANARY not in _all_text(smtp, webhook)


def test_a_failed_run_names_its_public_reason_and_where_the_report_is(
    project: Settings, spec: DatasetSpec, smtp: Smtp
) -> None:
    settings = replace(project, env=_env(smtp))
    report = settings.reports_dir / DATASET / "run.json"
    failed = _record(
        settings,
        outcome="failed",
        reason="portal: the portal at http://127.0.0.1:8001 did not answer",
        report_path=str(report),  # an error report that was never written: still named
    )
    assert notify_run(settings, spec, failed) == ["e-mail to 2 recipients: failing"]
    body = smtp.box.messages[0].get_content()
    assert f"is failing: run {failed.run_id} ended failed" in body
    assert "portal: the portal at http://127.0.0.1:8001 did not answer" in body
    assert str(report) in body and "Failed checks" not in body


def test_freshness_alerts_when_it_changes_only(
    project: Settings, spec: DatasetSpec, smtp: Smtp, webhook: Webhook
) -> None:
    settings = replace(project, env=_env(smtp, webhook))
    assert notify_freshness(settings, spec, False, "6 hours") == []
    assert notify_freshness(settings, spec, None, "unknown") == []  # no date to judge by
    assert notify_freshness(settings, spec, True, "9 days") == [
        "e-mail to 2 recipients: stale",
        "webhook: stale",
    ]
    mail = smtp.box.messages[0]
    assert f"{DATASET} is stale" in mail["Subject"]
    assert "its data is 9 days old" in mail.get_content() and "daily" in mail.get_content()
    assert "9 days" in webhook.payloads[0]["text"]
    assert notify_freshness(settings, spec, True, "10 days") == []
    # run state and freshness are separate: a failing run still alerts while stale
    assert notify_run(settings, spec, _record(settings, outcome="rejected", reason="x")) != []
    assert notify_freshness(settings, spec, False, "2 hours") == [
        "e-mail to 2 recipients: fresh",
        "webhook: fresh",
    ]
    assert "is fresh again" in smtp.box.messages[-1]["Subject"]
    assert len(smtp.box.messages) == 3 and len(webhook.bodies) == 3


def test_secrets_stay_out_of_messages_and_logs(
    project: Settings,
    spec: DatasetSpec,
    rejected_run: RunRecord,
    smtp: Smtp,
    webhook: Webhook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = _env(smtp, webhook, CIVICFLOW_SMTP_USER="alerts", CIVICFLOW_SMTP_PASSWORD=SMTP_PASSWORD)
    settings = replace(project, env=env)
    caplog.set_level(logging.DEBUG)
    assert len(notify_run(settings, spec, _record(settings, rejected_run))) == 2
    assert smtp.box.logins == [b"alerts"]  # the password was used...
    webhook.fail = [500, 500]  # ...and a failing webhook gets a warning
    assert notify_run(settings, spec, _published(settings)) == ["e-mail to 2 recipients: recovered"]
    assert "webhook alert (recovered) not delivered: webhook answered HTTP 500" in caplog.text
    assert "[secret URL]" in caplog.text  # httpx's own request line, redacted
    for secret in (SMTP_PASSWORD, WEBHOOK_TOKEN):
        assert secret not in caplog.text
        assert secret not in _all_text(smtp, webhook)
    assert CANARY not in caplog.text


def test_a_channel_down_warns_and_the_alert_is_retried_after_the_next_run(
    project: Settings,
    spec: DatasetSpec,
    rejected_run: RunRecord,
    smtp: Smtp,
    webhook: Webhook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = Smtp("127.0.0.1", free_port(), smtp.box)  # nothing listens there
    settings = replace(project, env=_env(down, webhook))
    webhook.fail = [503, 503]
    first = _record(settings, rejected_run)
    with caplog.at_level(logging.WARNING, logger="civicflow.alerts"):
        assert notify_run(settings, spec, first) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("email alert (failing) not delivered: ConnectionRefusedError" in w for w in warnings)
    assert any(
        "webhook alert (failing) not delivered: webhook answered HTTP 503" in w for w in warnings
    )
    assert len(webhook.paths) == 2  # tried, and retried once on the 5xx
    # the run itself is untouched
    assert Ledger(settings.ledger_path).last(DATASET) == first

    # next run fails the same way: e-mail is up again, the webhook still down
    settings = replace(project, env=_env(smtp, webhook))
    webhook.fail = [503, 503]
    assert notify_run(settings, spec, _record(settings, rejected_run)) == [
        "e-mail to 2 recipients: failing"
    ]
    # third run: only the channel that never delivered is retried
    assert notify_run(settings, spec, _record(settings, rejected_run)) == ["webhook: failing"]
    assert notify_run(settings, spec, _record(settings, rejected_run)) == []
    assert len(smtp.box.messages) == 1 and len(webhook.bodies) == 1


def test_the_webhook_is_retried_once_on_5xx_and_never_on_4xx(
    project: Settings, spec: DatasetSpec, webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    settings = replace(project, env=_env(webhook=webhook))
    webhook.fail = [502]
    assert notify_freshness(settings, spec, True, "9 days") == ["webhook: stale"]
    assert len(webhook.paths) == 2 and len(webhook.bodies) == 1
    webhook.fail = [404]
    assert notify_freshness(settings, spec, False, "1 hour") == []
    assert len(webhook.paths) == 3
    assert "webhook answered HTTP 404" in caplog.text


def test_without_channels_a_change_is_one_info_line(
    project: Settings, spec: DatasetSpec, rejected_run: RunRecord, caplog: pytest.LogCaptureFixture
) -> None:
    settings = replace(project, env={})
    caplog.set_level(logging.INFO, logger="civicflow.alerts")
    assert notify_run(settings, spec, _record(settings, rejected_run)) == ["log: failing"]
    assert notify_run(settings, spec, _record(settings, rejected_run)) == []
    lines = [r for r in caplog.records if r.name == "civicflow.alerts"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert f"{DATASET} is failing" in lines[0].getMessage()
    assert CANARY not in caplog.text


def test_a_misconfigured_channel_is_named_and_the_other_still_sends(
    project: Settings, spec: DatasetSpec, webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    env = _env(webhook=webhook, CIVICFLOW_SMTP_HOST="127.0.0.1", CIVICFLOW_SMTP_PORT="smtp")
    settings = replace(project, env=env)
    assert notify_freshness(settings, spec, True, "9 days") == ["webhook: stale"]
    assert "CIVICFLOW_SMTP_PORT: expected a port number" in caplog.text
    bad_url = replace(project, env={"CIVICFLOW_ALERT_WEBHOOK_URL": "hooks.example/T0/secret"})
    assert notify_freshness(bad_url, spec, True, "9 days") == []
    assert "CIVICFLOW_ALERT_WEBHOOK_URL: expected an http:// or https:// URL" in caplog.text
    assert "T0/secret" not in caplog.text


def test_a_data_age_reads_in_hours_then_days() -> None:
    assert [describe_age(timedelta(hours=h)) for h in (1, 5, 47, 48, 24 * 9 + 5)] == [
        "1 hour",
        "5 hours",
        "47 hours",
        "2 days",
        "9 days",
    ]
    assert describe_age(None) == "unknown"


# -- off loopback: STARTTLS, and no password in the clear ---------------------------


def _outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


@pytest.fixture
def outward() -> str:
    address = _outward_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to serve SMTP on")
    return address


def _certificate(folder: Path, address: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``address``, made with the openssl command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=civicflow-test",
            "-addext",
            f"subjectAltName=IP:{address}",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_smtp(outward: str, tmp_path: Path) -> Iterator[tuple[Smtp, Path]]:
    """An SMTP server off loopback that requires STARTTLS (and offers AUTH after it)."""
    cert, key = _certificate(tmp_path, outward)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = Mailbox()
    controller = Controller(
        box,
        hostname=outward,
        port=free_port(),
        tls_context=context,
        require_starttls=True,
        authenticator=box.authenticate,
    )
    controller.start()
    try:
        yield Smtp(outward, controller.port, box), cert
    finally:
        controller.stop()


def test_off_loopback_mail_goes_over_starttls_to_a_trusted_server_only(
    project: Settings,
    spec: DatasetSpec,
    tls_smtp: tuple[Smtp, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, cert = tls_smtp
    env = _env(server, CIVICFLOW_SMTP_USER="alerts", CIVICFLOW_SMTP_PASSWORD=SMTP_PASSWORD)
    settings = replace(project, env=env)
    # an untrusted certificate: nothing is sent, not even falling back to plain text
    assert notify_freshness(settings, spec, True, "9 days") == []
    assert "SSLCertVerificationError" in caplog.text and server.box.raw == []
    # trusted (as a city's own CA would be): delivered encrypted, after logging in
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    assert notify_freshness(settings, spec, True, "9 days") == ["e-mail to 2 recipients: stale"]
    assert server.box.encrypted == [True] and server.box.logins == [b"alerts"]


def test_the_password_is_never_sent_unencrypted_off_loopback(
    project: Settings, spec: DatasetSpec, outward: str, caplog: pytest.LogCaptureFixture
) -> None:
    box = Mailbox()
    plain = Controller(
        box,
        hostname=outward,
        port=free_port(),
        authenticator=box.authenticate,
        auth_require_tls=False,
    )
    plain.start()
    try:
        server = Smtp(outward, plain.port, box)
        env = _env(server, CIVICFLOW_SMTP_USER="alerts", CIVICFLOW_SMTP_PASSWORD=SMTP_PASSWORD)
        assert notify_freshness(replace(project, env=env), spec, True, "9 days") == []
    finally:
        plain.stop()
    assert box.logins == [] and box.raw == []
    assert "offers no STARTTLS: the password is not sent unencrypted" in caplog.text


def test_the_scheduled_check_alerts_once_when_data_goes_stale_and_once_when_fresh(
    tmp_path: Path, smtp: Smtp, webhook: Webhook
) -> None:
    """What the freshness-hourly deployment runs, over a real published Parquet copy,
    a controllable clock, a real SMTP server and a real webhook receiver."""
    from datetime import timedelta

    from civicflow import published
    from civicflow.alerts.freshness_watch import check_freshness
    from civicflow.freshness import allowance
    from tests.test_freshness import NEWEST, make_spec, publish_copy

    settings = Settings(project_dir=PROJECT, var_dir=tmp_path / "var", env=_env(smtp, webhook))
    spec = make_spec("daily")
    never = make_spec("daily").model_copy(update={"id": "never_published"})
    publish_copy(settings, spec, published_at=NEWEST.isoformat())
    assert published.latest(settings, spec.id) is not None
    specs = {spec.id: spec, never.id: never}
    limit = allowance("daily")
    assert limit is not None

    fresh = check_freshness(settings, specs, now=NEWEST + timedelta(hours=6))
    assert [(c.dataset_id, c.state, c.sent) for c in fresh] == [
        ("cases", "fresh", []),
        ("never_published", "unknown", []),  # nothing to judge: no alert either way
    ]
    later = NEWEST + limit + timedelta(hours=1)
    stale = check_freshness(settings, specs, now=later)
    assert stale[0].state == "stale"
    assert stale[0].sent == ["e-mail to 2 recipients: stale", "webhook: stale"]
    assert "cases is stale" in smtp.box.messages[0]["Subject"]
    assert "daily" in smtp.box.messages[0].get_content()
    # the next hourly check finds it still stale: nothing new to say
    again = check_freshness(settings, specs, now=later + timedelta(hours=1))
    assert again[0].state == "stale" and again[0].sent == []
    assert len(smtp.box.messages) == 1 and len(webhook.payloads) == 1
    # new data arrives (its newest record is from the hour before): fresh again, said once
    import pandas as pd

    frame = pd.DataFrame(
        {
            "id": pd.array([5], dtype="Int64"),
            "opened": pd.Series([later - timedelta(hours=1)], dtype="datetime64[us, UTC]"),
        }
    )
    published.write_version(
        settings, spec.id, frame, "w" * 64, "run-2", published_at=later.isoformat()
    )
    recovered = check_freshness(settings, specs, now=later + timedelta(hours=2))
    assert recovered[0].state == "fresh"
    assert recovered[0].sent == ["e-mail to 2 recipients: fresh", "webhook: fresh"]
    assert "is fresh again" in smtp.box.messages[-1]["Subject"]
    assert len(smtp.box.messages) == 2
