"""The demo: ingest real photos, bootstrap a CLIP filter, curate a synthetic set and measure the filter,
train and evaluate the three model families on the curated version, and transcribe speech."""

from __future__ import annotations

from prefect import flow

from flows.bootstrap_filter import bootstrap_filter_flow
from flows.curate import curate_flow
from flows.ingest import ingest_flow
from flows.train import train_contrastive_flow, train_diffusion_flow, train_masked_flow
from flows.transcribe import transcribe_flow
from mmpipe.demo.speech import SPEECH_DIR
from mmpipe.home import resolve_home
from mmpipe.models.names import TINY_CLIP
from tasks.demo import evaluate_demo, write_demo_data


@flow(name="demo")
def demo_flow(home: str | None = None, train_steps: int = 300, model_steps: int = 150) -> dict:
    """Chains the flows as subflows on the embedded demo data."""
    home = str(resolve_home(home))
    photos, shapes = write_demo_data(home)
    ingest = ingest_flow(photos, "demo-photos", home=home)
    trusted = curate_flow(str(shapes.seed_shard.parent), "demo-trusted", home=home, min_side=64, clip_model="none")
    filt = bootstrap_filter_flow("demo-trusted", home=home, steps=train_steps)
    curate = curate_flow(shapes.pattern, "demo-shapes", home=home, min_side=64, clip_model=filt["model_name"],
                         clip_pretrained=filt["checkpoint"], min_clip_score=filt["min_score"])
    report = evaluate_demo(home, curate["run_id"], shapes, filt["model_id"])
    dataset = f"demo-shapes@{curate['dataset']['version']}"
    contrastive = train_contrastive_flow(dataset, home=home, steps=model_steps, batch_size=64, lr=3e-3)
    masked = train_masked_flow(dataset, home=home, steps=model_steps, batch_size=64, lr=3e-3)
    diffusion = train_diffusion_flow(dataset, home=home, clip_model=TINY_CLIP,
                                     clip_pretrained=contrastive["checkpoint"], steps=model_steps, batch_size=32,
                                     lr=3e-3)
    speech = transcribe_flow(str(SPEECH_DIR), "demo-speech", home=home, whisper_model="tiny.en")
    return {"home": home, "photos": photos, "ingest": ingest, "trusted": trusted, "filter": filt, "curate": curate,
            "report": report, "models": [contrastive, masked, diffusion], "speech": speech}
