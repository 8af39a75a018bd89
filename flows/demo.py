"""The demo: ingest real photos, bootstrap a CLIP filter, curate a synthetic set, measure the filter."""

from __future__ import annotations

from prefect import flow

from flows.bootstrap_filter import bootstrap_filter_flow
from flows.curate import curate_flow
from flows.ingest import ingest_flow
from flows.transcribe import transcribe_flow
from mmpipe.demo.speech import SPEECH_DIR
from mmpipe.home import resolve_home
from tasks.demo import evaluate_demo, write_demo_data


@flow(name="demo")
def demo_flow(home: str | None = None, train_steps: int = 300) -> dict:
    """Chains the ingest, bootstrap-filter and curate flows as subflows on the embedded demo data."""
    home = str(resolve_home(home))
    photos, shapes = write_demo_data(home)
    ingest = ingest_flow(photos, "demo-photos", home=home)
    filt = bootstrap_filter_flow([str(shapes.seed_shard)], [str(shapes.holdout_shard)], home=home, steps=train_steps)
    curate = curate_flow(shapes.pattern, "demo-shapes", home=home, min_side=64, clip_model=filt["model_name"],
                         clip_pretrained=filt["checkpoint"], min_clip_score=filt["min_score"])
    report = evaluate_demo(home, curate["run_id"], shapes, filt["model_id"])
    speech = transcribe_flow(str(SPEECH_DIR), "demo-speech", home=home, whisper_model="tiny.en")
    return {"home": home, "photos": photos, "ingest": ingest, "filter": filt, "curate": curate, "report": report,
            "speech": speech}
