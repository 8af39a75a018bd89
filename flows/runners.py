"""Where a flow's tasks run: local threads (the default) or a Dask cluster through prefect-dask.

Prefect fixes a flow's task runner when the flow is decorated, so a choice is applied per call with
`flow.with_options(task_runner=...)` (see `run_with`). Model stages go through `per_shard`: one
after another in this process locally (one model, one device), mapped across the Dask workers
otherwise, each needing one `GPU` where the workers declare that resource.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Iterator

from prefect import Flow, Task, task, unmapped
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.futures import as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from mmpipe.progress import Bar, samples_in

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


@contextlib.contextmanager
def model_resources() -> Iterator[None]:
    """Tasks submitted inside need one GPU each, where the cluster's workers declare GPUs (a task
    asking for a resource no worker has would wait forever)."""
    if not on_dask():
        yield
        return
    import dask

    info = FlowRunContext.get().task_runner.client.scheduler_info(n_workers=-1)
    if any(w.get("resources", {}).get(GPU) for w in info.get("workers", {}).values()):
        with dask.annotate(resources={GPU: 1}):
            yield
    else:
        yield


GPU_TAG = "gpu"  # model tasks carry it; a Prefect concurrency limit on it caps GPU work (`mmpipe deploy`)
_gpu_limited: dict[str, bool] = {}  # {flow run id: whether its server holds a `gpu` limit}, the newest only


def gpu_tagged(task: Task) -> Task:
    """`task` with its `gpu` tag where the Prefect server holds a `gpu` concurrency limit, else without:
    Prefect asks its API for a slot before every tagged task run, limit or not, and with none there is
    nothing to wait for (bench/orchestration.py measures what that costs per shard). Looked up once per
    flow run: a limit created during a run applies from the next one."""
    if GPU_TAG not in task.tags:
        return task
    ctx = FlowRunContext.get()
    key = str(ctx.flow_run.id) if ctx and ctx.flow_run else ""
    if key not in _gpu_limited:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        with get_client(sync_client=True) as client:
            try:
                limited = client.read_concurrency_limit_by_tag(GPU_TAG) is not None
            except ObjectNotFound:
                limited = False
        _gpu_limited.clear()  # a long-lived process (`mmpipe serve`) runs flow after flow
        _gpu_limited[key] = limited
    return task if _gpu_limited[key] else task.with_options(tags=set(task.tags) - {GPU_TAG})


def on_a_worker(task: Task, *args: Any) -> Any:
    """`task(*args)` here, or on a Dask worker when the flow runs on Dask (where models load and devices
    are what the workers have)."""
    task = gpu_tagged(task)
    if not on_dask():
        return task(*args)
    with model_resources():
        future = task.submit(*args)
    return future.result()


def per_shard(task: Task, description: str, mapped: dict[str, list], **fixed: Any) -> list:
    """`task` once per shard (the i-th of each `mapped` list, plus `fixed`), results in shard order:
    one after another here, or mapped across the Dask workers; with a progress artifact and bar."""
    n = len(next(iter(mapped.values()), []))
    task = gpu_tagged(task)
    if on_dask():
        with model_resources():
            futures = task.map(**mapped, **{k: unmapped(v) for k, v in fixed.items()})
        return gather(list(futures), description)
    with _Progress(n, description) as tick, _one_slot_for_the_stage(task) as task:
        results = []
        for i in range(n):
            results.append(task(**{k: v[i] for k, v in mapped.items()}, **fixed))
            tick(results[-1])
        return results


@contextlib.contextmanager
def _one_slot_for_the_stage(task: Task) -> Iterator[Task]:
    """Here a stage's shards run one after another on one loaded model, so a `gpu`-tagged task's stage
    holds one `gpu` slot throughout and its task runs ask for none: one acquisition per stage instead of
    one per shard, each of which Prefect 3.9 ends with a wait of up to 2 s (its lease-renewal thread's
    join; bench/orchestration.py, the path with a gpu limit)."""
    if GPU_TAG not in task.tags:
        yield task
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(f"tag:{GPU_TAG}", occupy=1, lease_duration=60):  # the name Prefect gives a tag's limit
        yield task.with_options(tags=set(task.tags) - {GPU_TAG})


@task(cache_policy=NO_CACHE, task_run_name="{label}")
def _flow_on_a_worker(label: str, flow: Flow, params: dict) -> Any:
    """A whole flow run as one task (it runs as a subflow in the worker that takes it). No `gpu` tag:
    the flow's own model tasks carry it, and a slot held here would keep them from getting one."""
    return flow(**params)


def flows_side_by_side(calls: list[tuple[str, Flow, dict]], description: str) -> list:
    """Each `flow(**params)` of (label, flow, params), results in order: one after another here (one
    model, one device), or all submitted at once across the Dask workers, each on one GPU where the
    workers declare GPUs, as many at a time as there are workers free."""
    if not on_dask():
        with _Progress(len(calls), description) as tick:
            results = []
            for _, flow, params in calls:
                results.append(flow(**params))
                tick(None)
            return results
    with model_resources():
        futures = [_flow_on_a_worker.submit(label, flow, params) for label, flow, params in calls]
    return gather(futures, description)


def gather(futures: list, description: str) -> list:
    """The results of submitted tasks in order, with a bar and a progress artifact that move as they finish."""
    with _Progress(len(futures), description) as tick:
        for future in as_completed(futures):
            try:
                done = future.result()
            except Exception:  # noqa: BLE001 - raised below, in order, by the caller's result
                done = None
            tick(done)
    return [f.result() for f in futures]


class _Progress:
    """A terminal bar (mmpipe.progress: shards, samples, rates and time left, on a TTY only) and a Prefect
    progress artifact, updated on each 5% step at most once a second (each update is an API call in the
    flow's thread) and at the end."""

    def __init__(self, n: int, description: str) -> None:
        self.n, self.done = n, 0
        self.artifact = create_progress_artifact(0.0, description=description)
        self.bar = Bar(n, description.split(",")[0])
        self.shown, self.shown_at = 0.0, time.monotonic()

    def __enter__(self):
        return self.tick

    def tick(self, result: Any = None) -> None:
        self.done += 1
        percent = 100.0 * self.done / self.n
        if self.done == self.n or (percent - self.shown >= 5 and time.monotonic() - self.shown_at >= 1):
            update_progress_artifact(self.artifact, percent)
            self.shown, self.shown_at = percent, time.monotonic()
        self.bar.update(1, samples_in(result))

    def __exit__(self, *exc) -> None:
        self.bar.close()


def run_name(flow: str, param: str = "name"):
    """A flow-run name that says what runs: `curate-images-20261129-031500` (FLOW-<param>-<UTC time>)."""
    def name() -> str:
        from datetime import datetime, timezone

        from prefect.runtime import flow_run

        what = str(flow_run.parameters.get(param) or "").replace("/", "_")[:60]
        return "-".join(x for x in (flow, what, datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")) if x)

    return name
