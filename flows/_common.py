"""What every flow shares: the one stage-to-task wrapper and the flow's settings.

Deployments run flows in a worker process, not through the CLI, so the flow itself
sets umask 077: whatever it (or a library) writes under var/ is private to the owner.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from civicflow.portals import PortalConflict
from civicflow.privatefs import private_umask
from civicflow.secrets import block_name, secret_env_names
from civicflow.settings import Settings, load_settings
from civicflow.spec import SpecError, load_dataset

# Only the publish stage talks to a network service; retry it for transient errors.
_RETRIES = {"publish": 2}


def _retry_unless_conflict(task: Any, task_run: Any, state: State) -> bool:
    """A conflict is final: retrying would publish over a newer version."""
    try:
        state.result(raise_on_failure=True)
    except PortalConflict:
        return False
    except Exception:  # noqa: BLE001 - any other failure may be transient
        return True
    return True


def as_task(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as a Prefect task named ``name`` (the ``wrap`` the pipeline takes)."""
    return Task(
        fn,
        name=name,
        cache_policy=NO_CACHE,
        retries=_RETRIES.get(name, 0),
        retry_delay_seconds=3,
        retry_condition_fn=_retry_unless_conflict,
    )


def flow_settings() -> Settings:
    """The project's settings, with the process made private first (umask 077), and
    secrets the environment lacks read from their Prefect Secret blocks."""
    private_umask()
    return with_block_secrets(load_settings())


def with_block_secrets(settings: Settings) -> Settings:
    """``settings`` with each unset secret variable filled from its Secret block, if any.

    A block that does not exist is skipped (the stage that needs the secret names the
    variable and the block when it is missing); values are never logged.
    """
    from prefect.blocks.system import Secret

    names = secret_env_names(_readable_specs(settings))
    found: dict[str, str] = {}
    for name in names:
        if settings.env.get(name):
            continue
        try:
            # _sync: the sync path even when called from inside a running event loop.
            block: Any = Secret.load(block_name(name), _sync=True)  # type: ignore[call-arg]
            value = block.get()
        except ValueError:  # Prefect's "Unable to find block document named ..."
            continue
        if value:
            found[name] = str(value)
    return dataclasses.replace(settings, env={**settings.env, **found}) if found else settings


def _readable_specs(settings: Settings) -> list[Any]:
    """Every spec that loads; a broken one is reported by the run that uses it."""
    specs = []
    for path in sorted(settings.datasets_dir.glob("*.yaml")):
        with contextlib.suppress(SpecError):
            specs.append(load_dataset(path))
    return specs
