"""How flows run their tasks: a `gpu` slot only where a `gpu` concurrency limit exists (a local stage
holds one for all its shards), and each stage's progress artifact."""

from __future__ import annotations


def test_model_tasks_hold_a_gpu_slot_only_where_the_server_holds_a_gpu_limit(prefect_harness):
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.client.orchestration import get_client
    from prefect.context import TaskRunContext

    from flows.fanout import on_a_worker, per_shard

    @task(cache_policy=NO_CACHE, tags=["gpu", "model"])
    def model_task(i: int) -> tuple[set[str], int | None]:
        """This run's tags, and the `gpu` slots taken while it runs (None: no limit)."""
        from prefect.exceptions import ObjectNotFound

        with get_client(sync_client=True) as client:  # a tag's limit is the global limit "tag:<tag>"
            try:
                taken = client.read_global_concurrency_limit_by_name("tag:gpu").active_slots
            except ObjectNotFound:
                taken = None
        return set(TaskRunContext.get().task_run.tags), taken

    @flow
    def stage() -> list:
        return per_shard(model_task, "shards", {"i": [0, 1]}) + [on_a_worker(model_task, 2)]

    assert stage() == [({"model"}, None)] * 3  # no limit: no slot asked for, the other tags stay
    assert model_task.tags == {"gpu", "model"}  # the declared task is left as it is
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="gpu", concurrency_limit=1)
    try:
        *shards, single = stage()
        assert shards == [({"model"}, 1)] * 2  # the stage holds the one slot; its shards ask for none
        assert single == ({"gpu", "model"}, 1)  # a single model task holds it through its tag
        with get_client(sync_client=True) as client:
            assert client.read_global_concurrency_limit_by_name("tag:gpu").active_slots == 0  # all released
    finally:
        with get_client(sync_client=True) as client:
            client.delete_concurrency_limit_by_tag("gpu")


def test_a_stage_reports_its_progress_as_an_artifact_that_ends_at_100(prefect_harness):
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.context import FlowRunContext

    from flows.fanout import gather, per_shard

    @task(cache_policy=NO_CACHE)
    def shard(i: int) -> int:
        return i * i

    @flow
    def stages() -> tuple[list, list, str]:
        return (per_shard(shard, "in turn", {"i": list(range(30))}),
                gather(list(shard.map(list(range(7)))), "mapped"), str(FlowRunContext.get().flow_run.id))

    in_turn, mapped, flow_run_id = stages()
    assert in_turn == [i * i for i in range(30)] and mapped == [i * i for i in range(7)]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    assert sorted((a.description, a.data) for a in artifacts if a.type == "progress") == [("in turn", 100.0),
                                                                                         ("mapped", 100.0)]


def test_flow_runs_on_the_harness_send_no_heartbeats(prefect_harness):
    """The test harness (like a command's private server) dies with the process: its flow runs send none."""
    from prefect import flow
    from prefect.settings import get_current_settings

    @flow
    def heartbeat_setting() -> int | None:
        return get_current_settings().flows.heartbeat_frequency

    assert heartbeat_setting() is None
