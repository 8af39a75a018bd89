"""The flows' requests (mmpipe/curation.py, mmpipe/train/request.py, mmpipe/semdedup.py,
mmpipe/export_options.py, mmpipe/search.py, mmpipe/sweep.py) hold exactly the flows' parameters with the
same defaults, so the params a run records (and a resume matches) stay what they were: every flow
parameter but the home."""

from __future__ import annotations

import dataclasses
import inspect

import pytest


def _params(flow) -> dict:
    return {k: p.default for k, p in inspect.signature(flow.fn).parameters.items() if k != "home"}


@pytest.mark.parametrize("which", ["curate", "transcribe"])
def test_a_request_has_the_flows_parameters_and_defaults(which):
    from flows.curate import curate_flow
    from flows.transcribe import transcribe_flow
    from mmpipe.curation import CurateRequest, TranscribeRequest

    flow, request = {"curate": (curate_flow, CurateRequest), "transcribe": (transcribe_flow, TranscribeRequest)}[which]
    fields = {f.name: f.default for f in dataclasses.fields(request)}
    given = _params(flow)
    assert list(fields) == list(given)
    assert all(fields[k] == v for k, v in given.items() if v is not inspect.Parameter.empty)


def test_curation_params_are_the_flows_arguments_with_the_default_keep_fraction_applied():
    from mmpipe.curation import CurateRequest

    scored = CurateRequest("src", "shapes", min_side=64)
    assert scored.params()["keep_fraction"] == 0.3 and scored.params()["min_side"] == 64
    assert CurateRequest("src", "shapes", clip_model="none").params()["keep_fraction"] is None
    assert CurateRequest("src", "shapes", min_clip_score=0.5).params()["keep_fraction"] is None
    assert CurateRequest("src", "shapes") == CurateRequest("src", "shapes")
    assert CurateRequest("src", "shapes").params() != CurateRequest("src", "shapes", shard_size=64).params()


@pytest.mark.parametrize("objective", ["contrastive", "masked", "diffusion"])
def test_a_training_run_is_defined_by_every_flow_parameter_but_the_home(objective, tmp_path):
    import flows.train as train
    from mmpipe.train.request import TrainRequest

    flow = getattr(train, f"train_{objective}_flow")
    given = _params(flow)
    model = {k: given[k] for k in given if k not in {f.name for f in dataclasses.fields(TrainRequest)}}
    request = TrainRequest(objective, "shapes@v1", model)
    assert set(request.run_params(str(tmp_path))) == set(given)


def _requests() -> dict:
    from flows.dedup import semantic_dedup_flow
    from flows.export import export_flow, index_flow
    from flows.sweep import sweep_flow
    from mmpipe.export_options import ExportRequest
    from mmpipe.search import IndexRequest
    from mmpipe.semdedup import SemDedupRequest
    from mmpipe.sweep import SweepRequest

    return {"dedup": (semantic_dedup_flow, SemDedupRequest), "export": (export_flow, ExportRequest),
            "index": (index_flow, IndexRequest), "sweep": (sweep_flow, SweepRequest)}


@pytest.mark.parametrize("which", ["dedup", "export", "index", "sweep"])
def test_a_dataset_flows_request_has_the_flows_parameters_and_defaults(which):
    flow, request = _requests()[which]
    fields = {f.name: f.default for f in dataclasses.fields(request)}
    given = _params(flow)
    assert list(fields) == list(given)
    assert all(fields[k] == v for k, v in given.items() if v is not inspect.Parameter.empty)


CALLS = {  # (positional, keyword) arguments of a call, defaults left out and all given
    "dedup": [(("shapes@v1",), {}),
              (("shapes@v1",), {"threshold": 0.9, "clusters": 8, "name": "x", "clip_model": "m",
                                "clip_pretrained": "/w.pt", "seed": 3, "shard_size": 10})],
    "export": [(("shapes@v1",), {}),
               (("shapes@v1",), {"name": "n", "ids_file": "/a.npy", "query": "SELECT 1", "resize": 128,
                                 "resize_mode": "border", "image_format": "webp", "quality": 80, "shard_size": 7})],
    "index": [(("shapes@v1",), {}), (("shapes@v1",), {"kind": "hnsw", "clip_model": "m", "clip_pretrained": "p"})],
    "sweep": [(("src/*.tar", "sw", "held"), {"keep_fractions": [1.0, 0.5]}),
              (("src/*.tar", "sw", "held"), {"min_clip_scores": [0.2], "keep_fractions": [1.0],
                                             "clip_models": [["a", None], ["b", "w.pt"]], "objective": "masked",
                                             "samples_seen": 128, "model_name": "mm", "batch_size": 32, "lr": 1e-3,
                                             "seed": 2, "metric": "m", "curate": {"min_side": 64}, "device": "cpu"})],
}


@pytest.mark.parametrize("which", ["dedup", "export", "index", "sweep"])
def test_a_dataset_flow_stores_the_params_it_stored_before(which, tmp_path, monkeypatch):
    """The params the flow opens its run with are, as runs.params stores them (the resume key), what
    `{k: v for k, v in locals().items() if k != "home"}` gave at the top of the flow: every bound argument,
    defaults applied, but the home."""
    import importlib

    from warehouse.queries import canonical_params

    flow, _ = _requests()[which]
    module = importlib.import_module(flow.fn.__module__)

    class Opened(Exception):
        pass

    def tracked_run(home, name, params, *args, **kwargs):
        raise Opened(params)

    monkeypatch.setattr(module, "tracked_run", tracked_run)
    for args, kwargs in CALLS[which]:
        bound = inspect.signature(flow.fn).bind(*args, home=str(tmp_path), **kwargs)
        bound.apply_defaults()
        before = {k: v for k, v in bound.arguments.items() if k != "home"}
        with pytest.raises(Opened) as opened:
            flow.fn(*args, home=str(tmp_path), **kwargs)
        assert canonical_params(opened.value.args[0]) == canonical_params(before)


def test_a_sweep_request_without_settings_is_refused_before_any_run():
    from mmpipe.sweep import SweepRequest

    with pytest.raises(ValueError, match="min_clip_scores and/or keep_fractions"):
        SweepRequest("src", "sw", "held", min_clip_scores=[], keep_fractions=None)
    assert SweepRequest("src", "sw", "held", keep_fractions=[0.5]).filter_models() == [["mmpipe-tiny-clip", None]]
