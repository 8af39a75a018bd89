"""The whole loop on one source: curate (images) or transcribe (audio), train the objectives on the new
version, evaluate."""

from __future__ import annotations

from prefect import flow

from flows.curate import curate_flow
from flows.runners import run_name
from flows.train import (train_asr_flow, train_audio_contrastive_flow, train_contrastive_flow, train_diffusion_flow,
                         train_masked_flow, train_speech_masked_flow)
from flows.transcribe import transcribe_flow
from mmpipe.home import resolve_home
from mmpipe.models.names import TINY_CLIP
from mmpipe.train.objectives import pipeline_modality

SPEECH_FLOWS = {"asr": train_asr_flow, "speech-masked": train_speech_masked_flow,
                "audio-contrastive": train_audio_contrastive_flow}


@flow(name="pipeline", flow_run_name=run_name("pipeline"))
def pipeline_flow(source: str, name: str, home: str | None = None, curate: dict | None = None,
                  objectives: tuple[str, ...] = ("contrastive", "masked", "diffusion"), steps: int = 300,
                  batch_size: int = 64, device: str | None = None, contrastive_model: str = TINY_CLIP) -> dict:
    """Curate `source` into NAME (a new version), then train and evaluate each objective on it; the
    diffusion model conditions on the contrastive model trained here. Speech objectives (asr,
    speech-masked, audio-contrastive) transcribe the source instead, `curate` holding transcribe options."""
    home = str(resolve_home(home))
    if pipeline_modality(objectives) == "audio":
        cur = transcribe_flow(source, name, home=home, **(curate or {}))
    else:
        cur = curate_flow(source, name, home=home, **(curate or {}))
    dataset = f"{name}@{cur['dataset']['version']}"
    out = {"curate": cur, "dataset": dataset}
    common = {"home": home, "steps": steps, "device": device}
    for objective in (o for o in objectives if o in SPEECH_FLOWS):
        out[objective] = SPEECH_FLOWS[objective](dataset, batch_size=batch_size, **common)
    if "contrastive" in objectives:
        out["contrastive"] = train_contrastive_flow(dataset, model_name=contrastive_model, batch_size=batch_size,
                                                    **common)
    if "masked" in objectives:
        out["masked"] = train_masked_flow(dataset, batch_size=batch_size, **common)
    if "diffusion" in objectives:
        clip = out.get("contrastive")
        out["diffusion"] = train_diffusion_flow(dataset, clip_model=contrastive_model if clip else None,
                                                clip_pretrained=clip["checkpoint"] if clip else None,
                                                batch_size=max(8, batch_size // 2), **common)
    return out
