"""Where alerts go: e-mail over SMTP and a webhook taking Slack-compatible JSON.

Both are configured from the environment (``Settings.env``; the SMTP password and the
webhook URL through ``Settings.secret``, since a Slack webhook URL is a credential).
A channel's ``send`` returns what it did, or raises ``ChannelError`` (or an ``OSError``,
``httpx.HTTPError``) whose message names no secret; the caller logs it as a warning.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import smtplib
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

import httpx

from civicflow.alerts.message import Alert
from civicflow.settings import Settings, SettingsError
from civicflow.spec.models import DatasetSpec

log = logging.getLogger("civicflow.alerts")

SMTP_HOST = "CIVICFLOW_SMTP_HOST"
SMTP_PORT = "CIVICFLOW_SMTP_PORT"
SMTP_USER = "CIVICFLOW_SMTP_USER"
SMTP_PASSWORD = "CIVICFLOW_SMTP_PASSWORD"
ALERT_FROM = "CIVICFLOW_ALERT_FROM"
ALERT_EMAIL_TO = "CIVICFLOW_ALERT_EMAIL_TO"
WEBHOOK_URL = "CIVICFLOW_ALERT_WEBHOOK_URL"
#: the two variables holding credentials (Prefect Secret blocks may fill them)
SECRET_NAMES = (SMTP_PASSWORD, WEBHOOK_URL)

SMTP_SSL_PORT = 465  # implicit TLS; any other port upgrades with STARTTLS when offered
TIMEOUT_S = 15.0
_ADDRESS = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")


class ChannelError(Exception):
    """A channel could not deliver; the message names no secret and no source value."""


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    def send(self, alert: Alert) -> str: ...


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (a local relay, a test server)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class EmailChannel:
    """E-mail over SMTP: STARTTLS when offered (except on loopback), login if a user is set."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = TIMEOUT_S
    name: str = "email"

    def send(self, alert: Alert) -> str:
        msg = EmailMessage()
        msg["Subject"] = alert.subject
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain="civicflow")
        msg["X-Civicflow-Dataset"] = alert.dataset_id
        msg.set_content(alert.text())
        with self._session() as smtp:
            smtp.send_message(msg)
        n = len(self.recipients)
        return f"e-mail to {n} recipient{'s' if n != 1 else ''}"

    @contextlib.contextmanager
    def _session(self) -> Iterator[smtplib.SMTP]:
        if self.port == SMTP_SSL_PORT:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
            )
            encrypted = True
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            encrypted = False
        with smtp:
            smtp.ehlo()
            if not encrypted and not is_loopback(self.host) and smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
                encrypted = True
            if self.user:
                if not encrypted and not is_loopback(self.host):
                    raise ChannelError(
                        f"SMTP server {self.host}:{self.port} offers no STARTTLS: the "
                        "password is not sent unencrypted"
                    )
                smtp.login(self.user, self.password or "")
            yield smtp


@dataclass(frozen=True)
class WebhookChannel:
    """An HTTP POST of the Slack-compatible JSON; one retry on a 5xx or connection error."""

    url: str = field(repr=False)
    timeout: float = TIMEOUT_S
    retry_delay_s: float = 1.0
    name: str = "webhook"

    def send(self, alert: Alert) -> str:
        payload = alert.slack()
        with _hidden_in_logs("httpx", self.url), httpx.Client(timeout=self.timeout) as client:
            for attempt in (1, 2):
                try:
                    response = client.post(self.url, json=payload)
                except httpx.TransportError as exc:
                    # the exception's text may hold the URL: keep only its kind
                    problem = type(exc).__name__
                else:
                    if response.is_success:
                        return "webhook"
                    problem = f"HTTP {response.status_code}"
                    if response.status_code < 500:
                        break  # a 4xx will not change on retry
                if attempt == 1:
                    time.sleep(self.retry_delay_s)
        raise ChannelError(f"webhook answered {problem}")


class LogChannel:
    """No channel configured: one INFO line per change, naming the dataset and change."""

    name = "log"

    def send(self, alert: Alert) -> str:
        log.info("alert (no e-mail or webhook configured): %s", alert.subject)
        return "log"


class _Redact(logging.Filter):
    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if self.secret in text:
            record.msg, record.args = text.replace(self.secret, "[secret URL]"), ()
        return True


@contextlib.contextmanager
def _hidden_in_logs(logger_name: str, secret: str) -> Iterator[None]:
    """httpx logs each request's URL at INFO; the webhook URL is a credential."""
    target = logging.getLogger(logger_name)
    redact = _Redact(secret)
    target.addFilter(redact)
    try:
        yield
    finally:
        target.removeFilter(redact)


def _port(settings: Settings) -> int:
    raw = settings.env.get(SMTP_PORT, "").strip()
    if not raw:
        return 25
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SettingsError(f"{SMTP_PORT}: expected a port number (1-65535), got {raw!r}")
    return int(raw)


def _addresses(text: str, variable: str) -> list[str]:
    found = [a for a in re.split(r"[,;\s]+", text) if a]
    bad = [a for a in found if not _ADDRESS.match(a)]
    if bad:
        raise SettingsError(f"{variable}: {len(bad)} of {len(found)} entries are not addresses")
    return found


def email_channel(settings: Settings, spec: DatasetSpec) -> EmailChannel | None:
    """The SMTP channel to the spec's steward (plus CIVICFLOW_ALERT_EMAIL_TO), or None."""
    host = settings.env.get(SMTP_HOST, "").strip()
    if not host:
        return None
    extra = _addresses(settings.env.get(ALERT_EMAIL_TO, ""), ALERT_EMAIL_TO)
    recipients = tuple(dict.fromkeys([spec.steward.email, *extra]))
    sender = settings.env.get(ALERT_FROM, "").strip()
    if sender:
        _addresses(sender, ALERT_FROM)
    user = settings.env.get(SMTP_USER, "").strip() or None
    return EmailChannel(
        host,
        _port(settings),
        sender or "civicflow@localhost",
        recipients,
        user,
        settings.secret(SMTP_PASSWORD),
    )


def webhook_channel(settings: Settings) -> WebhookChannel | None:
    """The webhook channel, or None when CIVICFLOW_ALERT_WEBHOOK_URL is not set."""
    url = settings.secret(WEBHOOK_URL)
    if url is None:
        return None
    if not url.startswith(("https://", "http://")):
        # the value is a credential: say what is wrong, never quote it
        raise SettingsError(f"{WEBHOOK_URL}: expected an http:// or https:// URL")
    return WebhookChannel(url.strip())
