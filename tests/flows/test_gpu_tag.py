"""Model tasks ask Prefect for a `gpu` slot only where a `gpu` concurrency limit exists."""

from __future__ import annotations


def test_model_tasks_carry_the_gpu_tag_only_where_the_server_holds_a_gpu_limit(prefect_harness):
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.client.orchestration import get_client
    from prefect.context import TaskRunContext

    from flows.runners import on_a_worker, per_shard

    @task(cache_policy=NO_CACHE, tags=["gpu", "model"])
    def model_task(i: int) -> set[str]:
        return set(TaskRunContext.get().task_run.tags)

    @flow
    def stage() -> list[set[str]]:
        return per_shard(model_task, "shards", {"i": [0, 1]}) + [on_a_worker(model_task, 2)]

    assert stage() == [{"model"}] * 3  # no limit: no slot to ask for, the other tags stay
    assert model_task.tags == {"gpu", "model"}  # the declared task is left as it is
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="gpu", concurrency_limit=1)
    try:
        assert stage() == [{"gpu", "model"}] * 3  # a limit: every model task holds one of its slots
    finally:
        with get_client(sync_client=True) as client:
            client.delete_concurrency_limit_by_tag("gpu")
