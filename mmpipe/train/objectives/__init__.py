"""The objectives the training loop trains, by the modality of the data they learn from."""

from __future__ import annotations

IMAGE_OBJECTIVES = ("contrastive", "masked", "diffusion")
AUDIO_OBJECTIVES = ("asr", "speech-masked", "audio-contrastive")


def pipeline_modality(objectives) -> str:
    """'image' or 'audio': what a pipeline training these objectives curates; a ValueError for an unknown
    objective or a mix of both."""
    wanted = set(objectives)
    unknown = wanted - set(IMAGE_OBJECTIVES) - set(AUDIO_OBJECTIVES)
    if unknown or not wanted:
        raise ValueError(f"unknown objective(s) {sorted(unknown) or '(none given)'}; use "
                         f"{', '.join(IMAGE_OBJECTIVES)} (image-text) or {', '.join(AUDIO_OBJECTIVES)} (audio)")
    if wanted & set(IMAGE_OBJECTIVES) and wanted & set(AUDIO_OBJECTIVES):
        raise ValueError("a pipeline trains image-text or audio objectives, not both: one source is one modality")
    return "audio" if wanted <= set(AUDIO_OBJECTIVES) else "image"
