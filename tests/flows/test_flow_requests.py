"""The flows' requests (mmpipe/curation.py, mmpipe/train/request.py) hold exactly the flows' parameters
with the same defaults, so the params a run records (and a resume matches) stay what they were: every
flow parameter but the home."""

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
