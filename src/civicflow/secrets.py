"""Which environment variables hold secrets, and the Prefect Secret block for each.

The library reads secrets from ``Settings.env`` only. Flows (``flows/_common.py``) fill
the variables the environment lacks from Prefect Secret blocks named after them, so a
deployment's worker needs no secret in its environment: ``CIVICFLOW_SOCRATA_KEY_SECRET``
is the block ``civicflow-socrata-key-secret``.
"""

from __future__ import annotations

from collections.abc import Iterable

from civicflow.spec.models import DatasetSpec

#: secrets every project may use, whatever its specs say (plus the Socrata domain: not a
#: secret, but a deployment's worker reads it from its block like the credentials)
CORE_SECRETS = (
    "CIVICFLOW_SOCRATA_DOMAIN",
    "CIVICFLOW_SOCRATA_APP_TOKEN",
    "CIVICFLOW_SOCRATA_KEY_ID",
    "CIVICFLOW_SOCRATA_KEY_SECRET",
    "CIVICFLOW_POSTGRES_PASSWORD",
    "CIVICFLOW_SMTP_PASSWORD",
    "CIVICFLOW_ALERT_WEBHOOK_URL",
)


def block_name(env_name: str) -> str:
    """The Prefect Secret block for an environment variable: lower case, dashes."""
    return env_name.lower().replace("_", "-")


def secret_env_names(specs: Iterable[DatasetSpec]) -> list[str]:
    """The core secrets plus every variable a spec's source names for a secret or a
    connection (a PostgreSQL URL is not secret, but a worker should not need it set)."""
    names = set(CORE_SECRETS)
    for spec in specs:
        for attr in ("password_env", "app_token_env", "connection_env"):
            name = getattr(spec.source, attr, None)
            if name:
                names.add(name)
    return sorted(names)
