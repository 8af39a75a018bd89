"""Serve or deploy mmpipe's deployments, from the one description in deployments/prefect.yaml.

`serve()` runs them in this process with `prefect.serve` (no work pool needed); `setup()` prepares a
server for `prefect deploy` (the process work pool, the `gpu` tag's concurrency limit, the source
variables). Both need a Prefect server (PREFECT_API_URL).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import yaml

SPEC = Path(__file__).with_name("prefect.yaml")
REPO = Path(__file__).resolve().parent.parent
POOL = "mmpipe-process"
_VARIABLE = re.compile(r"\{\{\s*prefect\.variables\.(\w+)\s*\}\}")


def deployments_spec(path: Path = SPEC) -> list[dict]:
    """The `deployments` entries of prefect.yaml (YAML anchors and merge keys resolved)."""
    return yaml.safe_load(path.read_text())["deployments"]


def _flow(entrypoint: str):
    module, name = entrypoint.split(":")
    return getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), name)


def _resolve(value: Any, variables: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: str(variables.get(m.group(1), "")), value)
    if isinstance(value, dict):
        return {k: _resolve(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, variables) for v in value]
    return value


def runner_deployments(schedules: bool = True, only: list[str] | None = None, interval_s: float | None = None,
                       parameters: dict[str, dict] | None = None) -> list:
    """RunnerDeployments for `prefect.serve`: the prefect.yaml entries, their `{{ prefect.variables.* }}`
    filled from the server, with schedules (optionally every `interval_s` instead) and event triggers."""
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.variables import Variable

    out = []
    for spec in deployments_spec():
        if only and spec["name"] not in only:
            continue
        names = set(_VARIABLE.findall(yaml.safe_dump(spec.get("parameters", {}))))
        variables = {n: Variable.get(n, default="") for n in names}
        params = {**_resolve(spec.get("parameters", {}), variables), **(parameters or {}).get(spec["name"], {})}
        kwargs: dict[str, Any] = {}
        if schedules and spec.get("schedules"):
            if interval_s:
                kwargs["interval"] = interval_s
            else:
                kwargs["cron"] = [s["cron"] for s in spec["schedules"] if "cron" in s] or None
                kwargs["interval"] = [s["interval"] for s in spec["schedules"] if "interval" in s] or None
        triggers = [DeploymentEventTrigger(**{k: v for k, v in t.items() if k != "type"})
                    for t in spec.get("triggers", [])]
        out.append(_flow(spec["entrypoint"]).to_deployment(
            name=spec["name"], parameters=params, triggers=triggers or None, description=spec.get("description"),
            tags=spec.get("tags"), concurrency_limit=spec.get("concurrency_limit"),
            **{k: v for k, v in kwargs.items() if v}))
    return out


def setup(gpu_slots: int = 1, image_source: str | None = None, audio_source: str | None = None) -> None:
    """On the current Prefect server: the process work pool, a concurrency limit on the `gpu` tag
    (one GPU task at a time per slot), and the source variables the schedules read."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.variables import Variable

    async def go() -> None:
        async with get_client() as client:
            try:
                await client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
            except ObjectAlreadyExists:
                pass
            await client.create_concurrency_limit(tag="gpu", concurrency_limit=gpu_slots)

    asyncio.run(go())
    for name, value in (("mmpipe_image_source", image_source), ("mmpipe_audio_source", audio_source)):
        if value is not None:
            Variable.set(name, value, overwrite=True)


def serve(schedules: bool = True, only: list[str] | None = None, interval_s: float | None = None,
          parameters: dict[str, dict] | None = None) -> None:
    """Serve the deployments in this process until interrupted (runs happen here, no worker needed)."""
    from prefect import serve as prefect_serve

    prefect_serve(*runner_deployments(schedules, only, interval_s, parameters))
