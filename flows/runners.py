"""Where a flow's tasks run: local threads (the default) or a Dask cluster through prefect-dask.

Prefect fixes a flow's task runner when the flow is decorated, so a choice is applied per call with
`flow.with_options(task_runner=...)` (see `run_with`). How work fans out on the chosen runner (a
task per shard, a flow per setting) is flows/fanout.py.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator

from prefect import Flow
from prefect.context import FlowRunContext
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

RUNNERS = ("local", "dask")
GPU = "GPU"  # the Dask worker resource a model task needs one of when workers declare it
# numpy's BLAS rounds differently with one thread than with several (Whisper's log-mel features are
# such a product, and a last bit can change a transcript); Dask starts workers with one. Workers
# started here get this process's count, read before any Nanny rewrites the environment.
_BLAS_THREADS = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count() or 1)


def task_runner(runner: str = "local", dask_address: str | None = None, workers: int | None = None) -> TaskRunner:
    """A thread pool (one task per core) for "local"; a DaskTaskRunner for "dask", joining the
    scheduler at `dask_address` or starting a LocalCluster of `workers` processes."""
    if runner not in RUNNERS:
        raise ValueError(f"runner is one of {', '.join(RUNNERS)}, not {runner!r}")
    if runner == "local":
        if dask_address or workers:
            raise ValueError("a Dask address or worker count needs the dask runner")
        # Shards in flight at once: one per core keeps peak memory independent of the input's size.
        return ThreadPoolTaskRunner(max_workers=max(2, os.cpu_count() or 2))
    from prefect_dask import DaskTaskRunner

    if dask_address:
        if workers:
            raise ValueError("a worker count sizes the LocalCluster the dask runner starts, not an existing cluster")
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(cluster_class=local_cluster, cluster_kwargs=local_cluster_kwargs(workers))


def local_cluster_kwargs(workers: int | None = None) -> dict:
    """LocalCluster settings: worker processes of one thread each (a model per process); with CUDA
    present every worker declares one GPU, so it runs one model task at a time."""
    kwargs: dict[str, Any] = {"n_workers": workers or 2, "threads_per_worker": 1, "processes": True,
                              "dashboard_address": None}
    if _cuda_devices():
        kwargs["resources"] = {GPU: 1}
    return kwargs


def local_cluster(**kwargs: Any):
    """A distributed.LocalCluster whose workers compute what this process computes (see `same_numerics`)."""
    from distributed import LocalCluster

    with same_numerics():
        return LocalCluster(**kwargs)


@contextlib.contextmanager
def same_numerics() -> Iterator[None]:
    """Dask workers (Nannies) started inside do numpy's BLAS math with this process's thread count,
    so a dataset made on them matches the local run's to the bit; torch keeps Dask's one thread."""
    import dask

    # A Nanny prefers the environment to its config, and leaves its settings in this process anyway.
    os.environ["OPENBLAS_NUM_THREADS"] = _BLAS_THREADS
    with dask.config.set({"distributed.nanny.pre-spawn-environ.OPENBLAS_NUM_THREADS": _BLAS_THREADS}):
        yield


def _cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_with(flow: Flow, runner: str = "local", dask_address: str | None = None, workers: int | None = None,
             **params: Any) -> Any:
    """Call `flow(**params)` with its tasks on the chosen runner (the flow's own for "local"); a Dask
    address implies the dask runner."""
    runner = "dask" if dask_address else runner
    chosen = task_runner(runner, dask_address, workers)
    if runner == "local":
        return flow(**params)
    chosen_flow = flow.with_options(task_runner=chosen)
    with _shared_api():
        return chosen_flow(**params)


@contextlib.contextmanager
def _shared_api() -> Iterator[None]:
    """Without a configured Prefect API, this process serves a temporary one; name it in the settings
    so tasks on Dask workers (which receive the flow's settings) report to it instead of each
    starting their own."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    with get_client(sync_client=True) as client:
        url = str(client.api_url)
    with temporary_settings(updates={PREFECT_API_URL: url.rstrip("/")}):
        yield


def short_lived_api() -> contextlib.AbstractContextManager:
    """Settings for flow runs whose Prefect API lives only as long as this process (a command's private
    server, a test harness): no flow-run heartbeats. Heartbeats let a lasting server notice a crashed
    run; this one dies with the run, and each flow run would end waiting up to 1 s for its heartbeat
    thread, which Prefect 3.9 sleeps in 1-second steps (bench/orchestration.py: an empty flow)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def on_dask() -> bool:
    """Whether the running flow's tasks go to a Dask cluster."""
    ctx = FlowRunContext.get()
    dask_runners = sys.modules.get("prefect_dask")  # not imported: no DaskTaskRunner in this process
    return bool(ctx and dask_runners and isinstance(ctx.task_runner, dask_runners.DaskTaskRunner))


def nested(flow: Flow) -> Flow:
    """`flow` to call inside a running flow on the same runner: a subflow otherwise runs its tasks on
    Prefect's default threads; on Dask it joins the running flow's cluster."""
    if not on_dask():
        return flow
    from prefect_dask import DaskTaskRunner

    address = FlowRunContext.get().task_runner.client.scheduler.address
    return flow.with_options(task_runner=DaskTaskRunner(address=address))


def run_name(flow: str, param: str = "name"):
    """A flow-run name that says what runs: `curate-images-20261129-031500` (FLOW-<param>-<UTC time>)."""
    def name() -> str:
        from datetime import datetime, timezone

        from prefect.runtime import flow_run

        what = str(flow_run.parameters.get(param) or "").replace("/", "_")[:60]
        return "-".join(x for x in (flow, what, datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")) if x)

    return name
