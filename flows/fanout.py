"""Fanning a flow's work out: a task per shard, a flow per setting, a model task on a worker, with a
progress bar and a Prefect progress artifact, on the flow's runner (flows/runners.py): one after
another in this process locally (one model, one device), mapped across the Dask workers otherwise,
each needing one `GPU` where the workers declare that resource.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

from prefect import Flow, Task, task, unmapped
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.futures import as_completed

from flows.runners import GPU, on_dask
from mmpipe.progress import Bar, samples_in
from tasks.runs import Run


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


def read_shards(task: Task, run: Run, shards: list, description: str, **fixed: Any) -> list[dict]:
    """`task(shard=..., **fixed)` mapped over the run's shards, results in shard order; a shard that could
    not be read (its result holds an `error`) is a warning of the run, not its failure."""
    prepared = gather(task.map(shard=shards, **{k: unmapped(v) for k, v in fixed.items()}), description)
    for p, shard in zip(prepared, shards):
        if p.get("error"):
            run.warn("broken_shard", f"shard {shard.path}: {p['error']}", shard=shard.path)
    return prepared


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
