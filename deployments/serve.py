"""Serve or deploy mmpipe's deployments, from the one description in deployments/prefect.yaml.

`serve()` runs them in this process with `prefect.serve` (no work pool needed); `setup()` prepares a
server for `prefect deploy` (the process work pool, the `gpu` tag's concurrency limit, the source
variables). Both need a Prefect server (PREFECT_API_URL).
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

import yaml

SPEC = Path(__file__).with_name("prefect.yaml")
REPO = Path(__file__).resolve().parent.parent
POOL = "mmpipe-process"
MODEL_VARIABLES = ("mmpipe_clip_model", "mmpipe_clip_pretrained", "mmpipe_whisper_model")
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
            tags=spec.get("tags"), concurrency_limit=_concurrency(spec.get("concurrency_limit")),
            **{k: v for k, v in kwargs.items() if v}))
    return out


def _concurrency(value: Any) -> Any:
    """prefect.yaml's `concurrency_limit` (a number, or limit + collision_strategy) for `to_deployment`."""
    if not isinstance(value, dict):
        return value
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    return ConcurrencyLimitConfig(**value)


def setup(gpu_slots: int = 1, image_source: str | None = None, audio_source: str | None = None,
          models: dict[str, str] | None = None) -> None:
    """On the current Prefect server: the process work pool, a concurrency limit on the `gpu` tag
    (one GPU task at a time per slot), the source variables the schedules read, and the model variables
    (`models`, else those already set, else offline-safe defaults: see `set_model_variables`)."""
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
    set_model_variables(models)


def deploy_all() -> int:
    """`prefect deploy --all` on prefect.yaml against the current Prefect server (after `setup`); its
    exit code."""
    import os
    import subprocess

    env = {**os.environ, "MMPIPE_REPO": str(REPO)}
    return subprocess.call([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file",
                            str(SPEC)], cwd=REPO, env=env)


def parameter_overrides(items: list[str]) -> dict[str, dict]:
    """`DEPLOYMENT.PARAM=VALUE` items (VALUE is JSON, or else a string) as {deployment: {param: value}};
    ValueError on a malformed item or an unknown deployment."""
    import json

    names = {d["name"] for d in deployments_spec()}
    out: dict[str, dict] = {}
    for item in items:
        target, eq, raw = item.partition("=")
        deployment, dot, key = target.partition(".")
        if not (eq and dot and key):
            raise ValueError(f"--param takes DEPLOYMENT.PARAM=VALUE, not {item!r}")
        if deployment not in names:
            raise ValueError(f"--param: no deployment {deployment!r} (deployments: {', '.join(sorted(names))})")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out.setdefault(deployment, {})[key] = value
    return out


def serve(schedules: bool = True, only: list[str] | None = None, interval_s: float | None = None,
          parameters: dict[str, dict] | None = None) -> None:
    """Serve the deployments in this process until interrupted (runs happen here, no worker needed)."""
    from prefect import serve as prefect_serve

    set_model_variables()
    prefect_serve(*runner_deployments(schedules, only, interval_s, parameters))


def set_model_variables(given: dict[str, str] | None = None, home: str | None = None) -> dict[str, str]:
    """The models the scheduled flows use, as Prefect variables: those `given`, else the ones already
    set on the server, else `default_models` (with a warning on stderr when those are offline ones)."""
    from prefect.variables import Variable

    current = {n: Variable.get(n, default=None) for n in MODEL_VARIABLES}
    given = {n: v for n, v in (given or {}).items() if v is not None}
    missing = [n for n in MODEL_VARIABLES if n not in given and current[n] is None]
    defaults: dict[str, str] = {}
    if missing:
        defaults, warnings = default_models(home)
        for about, message in warnings.items():
            if any(about in n for n in missing):
                print(f"warning: {message}", file=sys.stderr)
    chosen = {n: given.get(n, current[n] if current[n] is not None else defaults.get(n)) for n in MODEL_VARIABLES}
    for name, value in chosen.items():
        if value != current[name]:
            Variable.set(name, value, overwrite=True)
    return chosen


def default_models(home: str | None = None, online: bool | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """The production models when their hub is reachable; offline, the home's demo filter (or no CLIP
    filter when the home has none) and the Whisper model installed with the demo extra; with why."""
    from mmpipe.home import resolve_home
    from mmpipe.models.names import CLIP_MODEL, CLIP_PRETRAINED, WHISPER_MODEL

    if online if online is not None else hub_reachable():
        return ({"mmpipe_clip_model": CLIP_MODEL, "mmpipe_clip_pretrained": CLIP_PRETRAINED,
                 "mmpipe_whisper_model": WHISPER_MODEL}, {})
    root = resolve_home(home)
    found = _home_filter(root)
    how = "set the Prefect variables mmpipe_clip_model/mmpipe_clip_pretrained/mmpipe_whisper_model to choose"
    if found:
        clip = {"mmpipe_clip_model": found["model_name"], "mmpipe_clip_pretrained": found["checkpoint"]}
        said = (f"no CLIP model given and no network: the curation uses the home's bootstrapped filter "
                f"{found['model_name']} {found['checkpoint']} ({how})")
    else:
        clip = {"mmpipe_clip_model": "none", "mmpipe_clip_pretrained": ""}
        said = (f"no CLIP model given, no network and no demo filter in {root}: the curation scores nothing "
                f"(no CLIP filter; {how})")
    return ({**clip, "mmpipe_whisper_model": "tiny.en"},
            {"clip": said, "whisper": f"no Whisper model given and no network: the transcription uses tiny.en ({how})"})


def _home_filter(root: Path) -> dict | None:
    """The newest CLIP filter the bootstrap-filter flow registered in the home's warehouse (its architecture
    and checkpoint); without one, the newest checkpoint under models/demo-filter/ (the demo's tiny CLIP)."""
    if (root / "lake").is_dir():
        from warehouse import Warehouse
        from warehouse.dataset_queries import newest_filter

        try:
            found = newest_filter(Warehouse(root, read_only=True))
        except (RuntimeError, FileNotFoundError):  # a warehouse of an older schema, or none yet
            found = None
        if found and found["checkpoint"] and Path(found["checkpoint"]).is_file():
            return found
    from mmpipe.models.names import TINY_CLIP

    files = sorted((root / "models" / "demo-filter").rglob("*.safetensors"), key=lambda p: p.stat().st_mtime)
    return {"model_name": TINY_CLIP, "checkpoint": str(files[-1])} if files else None


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """Whether the model hub answers (never tried with HF_HUB_OFFLINE=1, as in tests)."""
    import os
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False
