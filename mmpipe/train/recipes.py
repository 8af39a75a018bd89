"""One function per objective: shards and plain values in, a trained checkpoint and its history out.

Each returns the loop's result ({checkpoint, out_dir, step, samples_seen, resumed_from, history})
plus `objective` and `config` (what a model registry records). Training options are TrainConfig
fields (steps or samples, batch_size, lr, warmup_steps, num_workers, seed, device, ...); a rerun
with the same out_dir resumes where the last one stopped.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

from mmpipe.train.data import ShardStream
from mmpipe.train.loop import TrainConfig, seed_everything, train

Shards = str | Sequence[str]
OnStep = Callable[[int, dict], None] | None


def _stream(shards: Shards, preprocess: Callable, tokenizer: Callable, split: str | None, val_fraction: float,
            seed: int, shuffle_buffer: int) -> ShardStream:
    return ShardStream(shards, preprocess, tokenizer, split=split, val_fraction=val_fraction, seed=seed,
                       shuffle_buffer=shuffle_buffer)


def train_contrastive(shards: Shards, out_dir: str | Path, model_name: str, pretrained: str | None = None,
                      siglip: bool = False, split: str | None = "train", val_fraction: float = 0.1,
                      shuffle_buffer: int = 1000, on_step: OnStep = None, **options) -> dict:
    """Train an open_clip model (CLIP or SigLIP loss); the checkpoint loads with
    open_clip.create_model_and_transforms(model_name, pretrained=checkpoint)."""
    from mmpipe.train.objectives.contrastive import create_contrastive

    config = TrainConfig(out_dir=str(out_dir), **options)
    seed_everything(config.seed)
    objective, preprocess_train, _, tokenizer = create_contrastive(model_name, pretrained, siglip)
    data = _stream(shards, preprocess_train, tokenizer, split, val_fraction, config.seed, shuffle_buffer)
    result = train(objective, data, config, on_step)
    return {**result, "objective": "contrastive",
            "config": {"model_name": model_name, "init": pretrained, "siglip": siglip, **asdict(config)}}


def train_masked(shards: Shards, out_dir: str | Path, model: dict | None = None, split: str | None = "train",
                 val_fraction: float = 0.1, shuffle_buffer: int = 1000, on_step: OnStep = None, **options) -> dict:
    """Train the M3AE-style masked autoencoder; `model` overrides MaskedConfig fields."""
    from mmpipe.train.objectives.masked import MaskedConfig, MaskedAutoencoder, masked_transform, masked_tokenizer

    config = TrainConfig(out_dir=str(out_dir), **options)
    model_config = MaskedConfig(**(model or {}))
    seed_everything(config.seed)
    data = _stream(shards, masked_transform(model_config), masked_tokenizer(model_config), split, val_fraction,
                   config.seed, shuffle_buffer)
    result = train(MaskedAutoencoder(model_config), data, config, on_step)
    return {**result, "objective": "masked", "config": {"model": asdict(model_config), **asdict(config)}}


def train_diffusion(shards: Shards, out_dir: str | Path, clip_model: str, clip_pretrained: str | None,
                    model: dict | None = None, split: str | None = "train", val_fraction: float = 0.1,
                    shuffle_buffer: int = 1000, on_step: OnStep = None, **options) -> dict:
    """Train the text-conditioned pixel DDPM on frozen token states of an open_clip text tower;
    `model` overrides DiffusionConfig fields. The UNet loads with UNet2DConditionModel.from_pretrained."""
    from mmpipe.train.objectives.diffusion import Diffusion, DiffusionConfig, diffusion_transform

    config = TrainConfig(out_dir=str(out_dir), **options)
    model_config = DiffusionConfig(**(model or {}))
    seed_everything(config.seed)
    objective = Diffusion.create(model_config, clip_model, clip_pretrained)
    data = _stream(shards, diffusion_transform(model_config), objective.tokenizer, split, val_fraction,
                   config.seed, shuffle_buffer)
    result = train(objective, data, config, on_step)
    return {**result, "objective": "diffusion",
            "config": {"model": asdict(model_config), "clip_model": clip_model, "clip_pretrained": clip_pretrained,
                       **asdict(config)}}


def _train_speech(name: str, objective_cls, config_cls, shards: Shards, out_dir: str | Path, model: dict | None,
                  split: str | None, val_fraction: float, shuffle_buffer: int, on_step: OnStep, options: dict) -> dict:
    """The speech objectives' one recipe: `model` overrides the objective's config fields, the clips stream
    through AudioStream with the objective's own features."""
    from mmpipe.train.audio_data import AudioStream

    config = TrainConfig(out_dir=str(out_dir), **options)
    model_config = config_cls(**(model or {}))
    seed_everything(config.seed)
    objective = objective_cls(model_config)
    data = AudioStream(shards, objective.features, split=split, val_fraction=val_fraction, seed=config.seed,
                       shuffle_buffer=shuffle_buffer)
    result = train(objective, data, config, on_step)
    return {**result, "objective": name, "config": {"model": asdict(model_config), **asdict(config)}}


def train_asr(shards: Shards, out_dir: str | Path, model: dict | None = None, split: str | None = "train",
              val_fraction: float = 0.1, shuffle_buffer: int = 1000, on_step: OnStep = None, **options) -> dict:
    """Train the Whisper-architecture recognizer on an audio version's transcripts (or references);
    `model` overrides AsrConfig fields. The checkpoint loads with WhisperForConditionalGeneration.from_pretrained."""
    from mmpipe.train.objectives.asr import AsrConfig, SpeechRecognizer

    return _train_speech("asr", SpeechRecognizer, AsrConfig, shards, out_dir, model, split, val_fraction,
                         shuffle_buffer, on_step, options)


def train_speech_masked(shards: Shards, out_dir: str | Path, model: dict | None = None, split: str | None = "train",
                        val_fraction: float = 0.1, shuffle_buffer: int = 1000, on_step: OnStep = None,
                        **options) -> dict:
    """wav2vec 2.0 pretraining on an audio version's clips; `model` overrides SpeechMaskedConfig fields. The
    checkpoint loads with Wav2Vec2ForPreTraining.from_pretrained."""
    from mmpipe.train.objectives.speech_masked import SpeechMasked, SpeechMaskedConfig

    return _train_speech("speech-masked", SpeechMasked, SpeechMaskedConfig, shards, out_dir, model, split,
                         val_fraction, shuffle_buffer, on_step, options)


def train_audio_contrastive(shards: Shards, out_dir: str | Path, model: dict | None = None,
                            split: str | None = "train", val_fraction: float = 0.1, shuffle_buffer: int = 1000,
                            on_step: OnStep = None, **options) -> dict:
    """CLAP-style audio-text contrastive training (a Whisper-encoder audio tower, an open_clip text tower,
    ClipLoss); `model` overrides AudioContrastiveConfig fields."""
    from mmpipe.train.objectives.audio_contrastive import AudioContrastive, AudioContrastiveConfig

    return _train_speech("audio-contrastive", AudioContrastive, AudioContrastiveConfig, shards, out_dir, model,
                         split, val_fraction, shuffle_buffer, on_step, options)


# Bump when a change to the training code changes what the same recipe trains (the loop, an objective,
# the data stream): models trained before then are no longer reused for it.
RECIPE_VERSION = 1
# Options that do not change what is trained: where and how fast it runs, how often it checkpoints.
_NOT_RECIPE = ("device", "num_workers", "checkpoint_every", "log_every", "progress", "out_dir", "steps", "samples")


def recipe(objective: str, dataset_id: str, options: dict) -> dict:
    """Everything that decides what a training run produces: objective, data version, model config and
    init, samples seen, batch size, optimizer and schedule, seed and RECIPE_VERSION (the training
    code). A trained model is reused only for an equal recipe."""
    fields = set(TrainConfig.__dataclass_fields__)
    config = TrainConfig(**{k: v for k, v in options.items() if k in fields})
    out = {k: v for k, v in sorted(asdict(config).items()) if k not in _NOT_RECIPE}
    out.update({k: v for k, v in sorted(options.items()) if k not in fields and k not in _NOT_RECIPE})
    out.update({"objective": objective, "dataset_id": dataset_id, "recipe_version": RECIPE_VERSION,
                "samples_seen": config.total_steps() * config.batch_size * config.grad_accum})
    return out


def recipe_key(recipe: dict) -> str:
    """A recipe's identity: sha256 of its canonical JSON."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()
