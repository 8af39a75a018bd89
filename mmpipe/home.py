"""Where mmpipe keeps its warehouse, and the offline Prefect settings that go with it."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = "mmpipe-data"

# Prefect settings mmpipe always turns off: it runs offline and phones nobody.
_TELEMETRY_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
    "DO_NOT_TRACK": "1",  # Prefect's SDK analytics: no first-run notice, no .sdk_telemetry/device_id
}


# Prefect's background services, off in a server that lives for one command (a flow command's private server;
# the tests' harness): it records the command's flow runs and their states, and nothing else needs it.
# Scheduling, automations (triggers), late-run, crash and cancellation detection are a lasting server's work
# (`mmpipe server`, which runs them all), and recording every task run's and every event's rows cost the
# quick demo's private server 9 of its 21 CPU-s and the demo 31 s of its 142 s (bench/RESULTS.md). The
# environment can turn any of them back on (PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED=true keeps
# the task runs, for the UI of a later `mmpipe server` on the same database).
SHORT_LIVED_SERVER_SERVICES_OFF = {f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in (
    "TASK_RUN_RECORDER", "EVENT_PERSISTER", "TRIGGERS", "SCHEDULER", "LATE_RUNS", "FOREMAN", "REPOSSESSOR",
    "CANCELLATION_CLEANUP", "PAUSE_EXPIRATIONS", "CLEANUP_RECONCILER")}


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """The mmpipe home: the argument, else $MMPIPE_HOME, else ./mmpipe-data."""
    return Path(home or os.environ.get("MMPIPE_HOME") or DEFAULT_HOME).resolve()


def configure_prefect(home: str | os.PathLike | None = None) -> None:
    """Offline hygiene; call before prefect is imported. PREFECT_HOME defaults under the mmpipe home."""
    root = resolve_home(home)
    os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    os.environ.update(_TELEMETRY_OFF)
    # The ephemeral API server can take a while to start on a small machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")


def stored_path(home: str | os.PathLike, path: str | None) -> str:
    """How the warehouse names a file the user gave: relative to the home when inside it (so the home
    can move), otherwise as given; '' for None. Tags and hub ids are not files and stay as they are."""
    if not path:
        return ""
    p = Path(path)
    if not p.exists():
        return path
    real, root = p.resolve(), Path(home).resolve()
    return str(real.relative_to(root)) if real.is_relative_to(root) else str(real)
