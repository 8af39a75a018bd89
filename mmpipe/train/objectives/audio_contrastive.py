"""The audio-contrastive objective: CLAP-style audio-text contrastive learning with open_clip's ClipLoss.

The text tower is open_clip's TextTransformer built from an open_clip model config (the tiny CLIP's by
default, so its BPE tokenizer too), optionally started from that model's checkpoint (the text weights of a
contrastive model mmpipe trained, or any open_clip checkpoint of that config). The audio tower is a Whisper
encoder (transformers' WhisperEncoder over Whisper's log-mel front end), mean-pooled over the clip's frames
and projected: chosen because it is the encoder the asr objective trains, the one faster-whisper runs for
transcription, and a checkpoint that `WhisperEncoder.from_pretrained` reads; on a GPU it can start from a
Whisper model's encoder. The caption of a clip is its transcript (the pseudo-label), or its reference text
where `targets="reference"` and it has one.

A checkpoint folder holds model.safetensors (the whole objective, for resume and `load_audio_contrastive`),
audio_tower/ (config.json + model.safetensors: WhisperEncoder.from_pretrained), preprocessor_config.json and
audio_contrastive_config.json.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmpipe.models.names import TINY_CLIP
from mmpipe.train.objectives.base import Objective

CONFIG_FILE = "audio_contrastive_config.json"
AUDIO_TOWER = "audio_tower"


@dataclass
class AudioContrastiveConfig:
    """Both towers, the shared embedding and the window; the defaults are the tiny CPU config."""

    text_model: str = TINY_CLIP  # the open_clip config whose text tower and tokenizer are used
    text_pretrained: str | None = None  # start the text tower from this open_clip checkpoint's text weights
    d_model: int = 96  # the audio tower (a Whisper encoder)
    layers: int = 2
    heads: int = 4
    ffn_dim: int = 256
    n_mels: int = 40
    max_seconds: int = 4  # the window: longer clips are skipped in training, cut in evaluation
    targets: str = "transcript"  # transcript (the pseudo-label) or reference (where a clip has one)

    def __post_init__(self):
        if self.targets not in ("transcript", "reference"):
            raise ValueError(f"targets must be 'transcript' or 'reference', not {self.targets!r}")


def _text_cfg(model_name: str) -> tuple[int, dict]:
    import open_clip

    from mmpipe.models.clip import register_configs

    register_configs()
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise ValueError(f"unknown open_clip model config {model_name!r}")
    return cfg["embed_dim"], cfg["text_cfg"]


class ClipFeatures:
    """A clip and its texts -> log-mel input features, the number of encoder frames holding audio, the
    caption's token ids (AudioStream's features)."""

    def __init__(self, config: AudioContrastiveConfig):
        import open_clip

        from mmpipe.models.clip import register_configs
        from mmpipe.train.objectives.asr import AsrConfig, feature_extractor

        register_configs()
        self.config = config
        self.extractor = feature_extractor(AsrConfig(n_mels=config.n_mels, max_seconds=config.max_seconds))
        self.tokenizer = open_clip.get_tokenizer(config.text_model)

    def audio(self, audio: np.ndarray) -> tuple[torch.Tensor, int]:
        """(n_mels, frames) features and how many encoder positions (20 ms each) hold the clip."""
        out = self.extractor(audio, sampling_rate=16000, return_tensors="np").input_features[0]
        frames = self.config.max_seconds * 50
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)), \
            max(1, min(frames, math.ceil(len(audio) / 320)))

    def sample(self, audio: np.ndarray, transcript: str, reference: str) -> dict:
        caption = reference if self.config.targets == "reference" and reference else transcript
        features, n_frames = self.audio(audio)
        return {"input_features": features, "n_frames": n_frames, "tokens": self.tokenizer([caption])[0],
                "text": caption}


class AudioContrastive(Objective):
    """The two towers, a learned temperature, and open_clip's ClipLoss: `contrastive_loss`."""

    def __init__(self, config: AudioContrastiveConfig | None = None):
        super().__init__()
        from open_clip.loss import ClipLoss
        from open_clip.model import _build_text_tower
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        from mmpipe.train.objectives.asr import AsrConfig, quiet_transformers, whisper_config

        quiet_transformers()
        self.config = c = config or AudioContrastiveConfig()
        self.features = ClipFeatures(c)
        embed_dim, text_cfg = _text_cfg(c.text_model)
        self.text = _build_text_tower(embed_dim, text_cfg)
        if c.text_pretrained:
            self._load_text(c.text_pretrained)
        encoder = AsrConfig(d_model=c.d_model, encoder_layers=c.layers, heads=c.heads, ffn_dim=c.ffn_dim,
                            n_mels=c.n_mels, max_seconds=c.max_seconds)
        self.audio = WhisperEncoder(whisper_config(encoder, vocab_size=4))
        self.audio_projection = nn.Linear(c.d_model, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.loss = ClipLoss()

    def _load_text(self, checkpoint: str) -> None:
        """The text weights of an open_clip checkpoint of the same config (its visual tower is left out)."""
        from open_clip.factory import load_state_dict

        state = {k: v for k, v in load_state_dict(checkpoint).items()
                 if not k.startswith("visual.") and k != "logit_scale" and k != "logit_bias"}
        missing, unexpected = self.text.load_state_dict(state, strict=False)
        if unexpected or [m for m in missing if m != "attn_mask"]:
            raise ValueError(f"{checkpoint} is not a {self.config.text_model} checkpoint: missing {missing}, "
                             f"unexpected {unexpected}")

    def encode_audio(self, features: torch.Tensor, n_frames: torch.Tensor) -> torch.Tensor:
        """Normalized embeddings: the encoder's states averaged over each clip's own frames, projected."""
        hidden = self.audio(features).last_hidden_state
        mask = (torch.arange(hidden.shape[1], device=hidden.device)[None, :] < n_frames[:, None]).unsqueeze(-1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return F.normalize(self.audio_projection(pooled), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Normalized embeddings of token ids."""
        return F.normalize(self.text(tokens), dim=-1)

    def training_forward(self, batch: dict) -> tuple[dict, dict]:
        audio = self.encode_audio(batch["input_features"], batch["n_frames"])
        text = self.encode_text(batch["tokens"])
        return {"contrastive_loss": self.loss(audio, text, self.logit_scale.exp())}, \
            {"logit_scale": float(self.logit_scale.detach().exp())}

    def after_step(self) -> None:
        """CLIP's clamp: the temperature never below 1/100."""
        with torch.no_grad():
            self.logit_scale.clamp_(0, math.log(100))

    def save(self, out_dir: str | Path) -> None:
        """model.safetensors (everything), the audio tower as a transformers folder, the front end, the config."""
        super().save(out_dir)
        out = Path(out_dir)
        self.audio.save_pretrained(out / AUDIO_TOWER, safe_serialization=True)
        self.features.extractor.save_pretrained(out)
        (out / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=1))


def load_audio_contrastive(path: str | Path, device: str | None = None) -> AudioContrastive:
    """A trained model from a checkpoint folder, or a run folder's newest whole checkpoint."""
    from mmpipe.train.loop import checkpoint_folder

    folder = checkpoint_folder(path, CONFIG_FILE)
    config = json.loads((folder / CONFIG_FILE).read_text())
    objective = AudioContrastive(AudioContrastiveConfig(**{**config, "text_pretrained": None}))
    objective.config.text_pretrained = config.get("text_pretrained")
    objective.load(folder)
    return objective.to(device or "cpu").eval()
