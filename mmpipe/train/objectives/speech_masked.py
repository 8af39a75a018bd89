"""The speech-masked objective: wav2vec 2.0 pretraining (transformers' Wav2Vec2ForPreTraining) on a curated
audio version's clips: spans of the convolutional latents are masked, and the transformer's output at each
masked frame must pick the frame's quantized latent among `num_negatives` distractors from the same clip
(the contrastive loss), while the diversity loss keeps the codebooks in use. Masks and negatives are drawn
as the transformers pretraining example draws them (`_compute_mask_indices`, `_sample_negative_indices`),
from NumPy's RNG, which the loop seeds and restores on resume.

The shipped tiny config (SpeechMaskedConfig's defaults) trains on a CPU: 64-wide, two layers, seven
32-channel convolutions (20 ms frames, as wav2vec 2.0), two codebooks of 32 entries. On a GPU, the
`facebook/wav2vec2-base` sizes (768 wide, 12 layers, 512 channels, 320 codevectors) train the same way.
Losses are reported per masked frame. A checkpoint folder is what `Wav2Vec2ForPreTraining.from_pretrained`
reads, plus preprocessor_config.json (Wav2Vec2FeatureExtractor) and speech_masked_config.json.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mmpipe.train.objectives.base import Objective

CONFIG_FILE = "speech_masked_config.json"


@dataclass
class SpeechMaskedConfig:
    """The model, its masking and its window; the defaults are the tiny CPU config."""

    hidden_size: int = 64
    layers: int = 2
    heads: int = 2
    intermediate_size: int = 128
    conv_channels: int = 32
    codevector_groups: int = 2
    codevectors_per_group: int = 32
    codevector_dim: int = 64
    num_negatives: int = 20
    mask_time_prob: float = 0.5
    mask_time_length: int = 4  # frames of 20 ms
    diversity_loss_weight: float = 0.1
    gumbel_temperature: float = 2.0
    max_seconds: int = 4  # the window: longer clips are skipped in training, cut in evaluation


def wav2vec2_config(config: SpeechMaskedConfig):
    """The transformers Wav2Vec2Config of a SpeechMaskedConfig (wav2vec 2.0's strides and kernels)."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(hidden_size=config.hidden_size, num_hidden_layers=config.layers,
                          num_attention_heads=config.heads, intermediate_size=config.intermediate_size,
                          conv_dim=(config.conv_channels,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2),
                          conv_kernel=(10, 3, 3, 3, 3, 2, 2), feat_extract_norm="layer", do_stable_layer_norm=True,
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                          num_codevector_groups=config.codevector_groups,
                          num_codevectors_per_group=config.codevectors_per_group,
                          codevector_dim=config.codevector_dim, proj_codevector_dim=config.codevector_dim,
                          num_negatives=config.num_negatives, mask_time_prob=config.mask_time_prob,
                          mask_time_length=config.mask_time_length,
                          diversity_loss_weight=config.diversity_loss_weight, hidden_dropout=0.0,
                          attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
                          feat_quantizer_dropout=0.0, layerdrop=0.0)


class WaveFeatures:
    """A clip -> normalized samples padded to the window, and which of them are audio (AudioStream's features)."""

    def __init__(self, config: SpeechMaskedConfig):
        from transformers import Wav2Vec2FeatureExtractor

        self.config = config
        self.extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                                  do_normalize=True, return_attention_mask=True)

    def sample(self, audio: np.ndarray, transcript: str = "", reference: str = "") -> dict:
        """input_values and attention_mask of one 16 kHz clip (texts unused: this objective learns from audio)."""
        window = self.config.max_seconds * 16000
        out = self.extractor(audio[:window], sampling_rate=16000, padding="max_length", max_length=window,
                             return_tensors="pt")
        return {"input_values": out.input_values[0].float(), "attention_mask": out.attention_mask[0].long()}


class SpeechMasked(Objective):
    """Wav2Vec2ForPreTraining and its losses: `contrastive_loss` and `diversity_loss` (weighted), per masked frame."""

    def __init__(self, config: SpeechMaskedConfig | None = None):
        super().__init__()
        from transformers import Wav2Vec2ForPreTraining

        from mmpipe.train.objectives.asr import quiet_transformers

        quiet_transformers()
        self.config = config or SpeechMaskedConfig()
        self.features = WaveFeatures(self.config)
        self.model = Wav2Vec2ForPreTraining(wav2vec2_config(self.config))
        self.model.set_gumbel_temperature(self.config.gumbel_temperature)

    def masks(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(frame attention mask, masked frames, negative indices) of a batch, drawn from NumPy's RNG."""
        from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

        values, attention = batch["input_values"], batch["attention_mask"]
        frames = int(self.model._get_feat_extract_output_lengths(values.shape[1]))
        frame_mask = self.model._get_feature_vector_attention_mask(frames, attention)
        shape = (values.shape[0], frames)
        masked = _compute_mask_indices(shape, self.config.mask_time_prob, self.config.mask_time_length,
                                       attention_mask=frame_mask, min_masks=2)
        negatives = _sample_negative_indices(shape, self.config.num_negatives, mask_time_indices=masked)
        device = values.device
        return (frame_mask, torch.as_tensor(masked, dtype=torch.bool, device=device),
                torch.as_tensor(negatives, dtype=torch.long, device=device))

    def losses(self, batch: dict) -> dict:
        """Per masked frame: the contrastive loss, the weighted diversity loss, and the codebook perplexity."""
        _, masked, negatives = self.masks(batch)
        out = self.model(batch["input_values"], attention_mask=batch["attention_mask"], mask_time_indices=masked,
                         sampled_negative_indices=negatives)
        n = masked.sum().clamp(min=1)
        return {"contrastive_loss": out.contrastive_loss / n,
                "diversity_loss": self.config.diversity_loss_weight * out.diversity_loss / n,
                "codevector_perplexity": out.codevector_perplexity.detach()}

    def training_forward(self, batch: dict) -> tuple[dict, dict]:
        out = self.losses(batch)
        return {k: v for k, v in out.items() if k.endswith("_loss")}, \
            {"codevector_perplexity": float(out["codevector_perplexity"])}

    def save(self, out_dir: str | Path) -> None:
        """The transformers folder (config.json, model.safetensors), the feature extractor and the config."""
        out = Path(out_dir)
        self.model.save_pretrained(out, safe_serialization=True)
        self.features.extractor.save_pretrained(out)
        (out / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=1))

    def load(self, out_dir: str | Path) -> None:
        """The weights save() wrote (a resumed run)."""
        from safetensors.torch import load_file

        device = next(self.model.parameters()).device
        self.model.load_state_dict(load_file(str(Path(out_dir) / "model.safetensors"), device=str(device)))


def load_speech_masked(path: str | Path, device: str | None = None) -> SpeechMasked:
    """A trained model from a checkpoint folder, or a run folder's newest whole checkpoint; the weights are
    read with Wav2Vec2ForPreTraining.from_pretrained."""
    from transformers import Wav2Vec2ForPreTraining

    from mmpipe.train.loop import checkpoint_folder

    folder = checkpoint_folder(path, CONFIG_FILE)
    objective = SpeechMasked(SpeechMaskedConfig(**json.loads((folder / CONFIG_FILE).read_text())))
    objective.model = Wav2Vec2ForPreTraining.from_pretrained(folder)
    objective.model.set_gumbel_temperature(objective.config.gumbel_temperature)
    return objective.to(device or "cpu").eval()
