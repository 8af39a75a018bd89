"""open_clip loading with a per-process cache: any model_name + pretrained, cuda+fp16 when present."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from mmpipe.models.cache import cached
from mmpipe.models.errors import ClipWeightsUnavailable
from mmpipe.models.names import CLIP_MODEL, CLIP_PRETRAINED, TINY_CLIP

# The production default: a real LAION-2B ViT-B/32. Its weights download from the hub on first
# use; offline, pass a local checkpoint path as `pretrained`, a `local-dir:` model, or use the
# tiny filter the demo bootstraps (mmpipe-tiny-clip + its trained checkpoint).
DEFAULT_MODEL = CLIP_MODEL
DEFAULT_PRETRAINED = CLIP_PRETRAINED
TINY_MODEL = TINY_CLIP
CONFIG_DIR = Path(__file__).parent / "configs"

_registered = False


@dataclass
class ClipBundle:
    """A loaded CLIP model with its eval preprocessing and tokenizer."""

    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    device: str
    dtype: torch.dtype
    model_name: str
    pretrained: str


class _RandomInitNotice(logging.Filter):
    """open_clip warns on the root logger whenever a model is built without weights, which is what
    training from scratch means; that line is noise in our output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded for model")


def register_configs() -> None:
    """Make the tiny configs shipped in mmpipe/models/configs known to open_clip."""
    global _registered
    if _registered:
        return
    import open_clip

    logging.getLogger().addFilter(_RandomInitNotice())
    for path in sorted(CONFIG_DIR.glob("*.json")):
        open_clip.add_model_config(path)
    _registered = True


def pick_device(device: str | None = None) -> str:
    """The requested device, else cuda when available, else cpu."""
    if device and device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _unavailable(model_name: str, pretrained: str, err: Exception) -> ClipWeightsUnavailable:
    return ClipWeightsUnavailable(
        f"CLIP weights for {model_name} / {pretrained} cannot be loaded ({err}). "
        "Hub tags need network access the first time (then they are cached). Offline choices: "
        "--clip-pretrained /path/to/checkpoint.(pt|bin|safetensors) with the matching --clip-model; "
        "--clip-model local-dir:/path/to/open_clip_model_folder; the filter the demo bootstraps "
        f"(--clip-model {TINY_MODEL} --clip-pretrained <home>/models/demo-filter/model.safetensors); "
        "or --clip-model none to skip CLIP scoring.")


def build_model(model_name: str, pretrained: str | None, device: str, precision: str) -> tuple[Any, Callable]:
    """Create an open_clip model and its eval transform; raise ClipWeightsUnavailable plainly."""
    import open_clip

    register_configs()
    schema_name = model_name.startswith(("hf-hub:", "local-dir:"))
    if pretrained and not schema_name and not Path(pretrained).is_file():
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        if pretrained not in tags:
            raise _unavailable(model_name, pretrained,
                               FileNotFoundError(f"not a file and not a known tag; tags: {tags}"))
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=None if schema_name else (pretrained or None),
            device=device, precision=precision)
    except (RuntimeError, OSError, ValueError) as e:
        if pretrained or schema_name:
            raise _unavailable(model_name, pretrained or model_name, e) from e
        raise
    model.eval()
    return model, preprocess


def load_clip(model_name: str, pretrained: str | None, device: str | None = None) -> ClipBundle:
    """Load (once per process) a CLIP model for scoring: fp16 on cuda, fp32 on cpu."""
    device = pick_device(device)

    def load() -> ClipBundle:
        import open_clip

        precision = "fp16" if device.startswith("cuda") else "fp32"
        model, preprocess = build_model(model_name, pretrained, device, precision)
        dtype = torch.float16 if precision == "fp16" else torch.float32
        return ClipBundle(model, preprocess, open_clip.get_tokenizer(model_name), device, dtype, model_name,
                          pretrained or "")

    return cached(("clip", model_name, pretrained or "", device), load)


@torch.no_grad()
def encode_pairs(bundle: ClipBundle, images: torch.Tensor, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized image and text embeddings (float32) for aligned pairs."""
    images = images.to(bundle.device, dtype=bundle.dtype, non_blocking=True)
    tokens = bundle.tokenizer(texts).to(bundle.device)
    img = bundle.model.encode_image(images).float()
    txt = bundle.model.encode_text(tokens).float()
    return torch.nn.functional.normalize(img, dim=-1), torch.nn.functional.normalize(txt, dim=-1)


def to_f16_bytes(emb: torch.Tensor) -> list[bytes]:
    """Each row of an embedding matrix as little-endian float16 bytes."""
    arr = emb.detach().cpu().numpy().astype("<f2")
    return [row.tobytes() for row in arr]


def from_f16_bytes(blob: bytes) -> np.ndarray:
    """Inverse of to_f16_bytes for one row, as float32."""
    return np.frombuffer(blob, dtype="<f2").astype(np.float32)
