"""What every flow shares: the one stage-to-task wrapper and the flow's settings.

Deployments run flows in a worker process, not through the CLI, so the flow itself
sets umask 077: whatever it (or a library) writes under var/ is private to the owner.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State

from civicflow.privatefs import private_umask
from civicflow.secrets import block_name, secret_env_names
from civicflow.settings import Settings, load_settings
from civicflow.spec import SpecError, load_dataset
from civicflow.transient import is_transient

# Stages that talk to a service retry transient failures, with backoff.
_RETRIES = {"extract": 3, "publish": 3}
_BACKOFF_S: list[float] = [5, 20, 60]


def _retry_if_transient(task: Any, task_run: Any, state: State) -> bool:
    """Retry a network error, a 5xx/429 or a locked database; nothing else (a conflict
    is final: retrying would publish over a newer version)."""
    try:
        state.result(raise_on_failure=True)
    except Exception as exc:  # noqa: BLE001 - classified, never swallowed: the state keeps it
        return is_transient(exc)
    return False


def as_task(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as a Prefect task named ``name`` (the ``wrap`` the pipeline takes)."""
    return Task(
        fn,
        name=name,
        cache_policy=NO_CACHE,
        retries=_RETRIES.get(name, 0),
        retry_delay_seconds=_BACKOFF_S,
        retry_condition_fn=_retry_if_transient,
    )


class RunFailed(Exception):
    """A failed flow run's summary as its Failed state's data.

    Prefect raises a failed run's data when a deployment run ends, so the data must be an
    exception: this one reads as the steward's reason, not "dict cannot be resolved into
    an exception"; callers get the summary back with :func:`summary_of`.
    """

    def __init__(self, message: str, summary: Any) -> None:
        super().__init__(message)
        self.summary = summary

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.summary))


def failed(message: str, summary: Any) -> State:
    """A Failed state carrying ``summary`` (see :class:`RunFailed`)."""
    return Failed(message=message, data=RunFailed(message, summary))


def summary_of(state: State) -> Any:
    """What a flow run returned: its summary whether it completed or failed (an
    unexpected exception comes back as itself)."""
    result = state.result(raise_on_failure=False)
    return result.summary if isinstance(result, RunFailed) else result


def flow_settings() -> Settings:
    """The project's settings, with the process made private first (umask 077), and
    secrets the environment lacks read from their Prefect Secret blocks."""
    private_umask()
    return with_block_secrets(load_settings())


def with_block_secrets(settings: Settings) -> Settings:
    """``settings`` with each unset secret variable filled from its Secret block, if any.

    One request reads the Secret blocks (a CLI call should not pay a round trip per
    variable); a block that does not exist is skipped (the stage that needs the secret
    names the variable and the block when it is missing); values are never logged.
    """
    wanted = {
        block_name(n): n
        for n in secret_env_names(_readable_specs(settings))
        if not settings.env.get(n)
    }
    found = {
        wanted[name]: value for name, value in _secret_blocks().items() if name in wanted and value
    }
    return dataclasses.replace(settings, env={**settings.env, **found}) if found else settings


def _secret_blocks(page: int = 200) -> dict[str, str]:
    """Every Secret block's name and value, from the Prefect API."""
    from prefect.client.orchestration import get_client

    values: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            docs = client.read_block_documents_by_type(
                "secret", offset=offset, limit=page, include_secrets=True
            )
            for doc in docs:
                value = (doc.data or {}).get("value")
                if doc.name and value is not None:
                    values[doc.name] = value if isinstance(value, str) else json.dumps(value)
            if len(docs) < page:
                return values
            offset += page


def _readable_specs(settings: Settings) -> list[Any]:
    """Every spec that loads; a broken one is reported by the run that uses it."""
    specs = []
    for path in sorted(settings.datasets_dir.glob("*.yaml")):
        with contextlib.suppress(SpecError):
            specs.append(load_dataset(path))
    return specs
