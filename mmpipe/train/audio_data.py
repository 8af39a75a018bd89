"""Training data for speech objectives: a curated audio version's shards (audio member, transcript .txt,
json with the reference text) streamed as decoded features and targets, with ShardStream's order,
sharding across workers and exact resume."""

from __future__ import annotations

import logging
from typing import Iterator, Protocol, Sequence

import numpy as np

from mmpipe.audio_io import AUDIO_EXTENSIONS, AUDIO_SAMPLE_RATE, decode_audio_bytes
from mmpipe.train.data import ShardStream, _shard_samples, sample_key, sample_meta, split_of

log = logging.getLogger(__name__)


class AudioFeatures(Protocol):
    """What a speech objective makes of a clip: its config's window, and the tensors of one sample."""

    config: object  # has max_seconds

    def sample(self, audio: np.ndarray, transcript: str, reference: str) -> dict:
        """The model's inputs (and targets) for one 16 kHz clip and its texts."""


def audio_and_texts(raw: dict) -> tuple[bytes, str, str] | None:
    """(encoded audio, transcript, reference or '') of a raw sample; None without audio or transcript."""
    audio = next((raw[e] for e in AUDIO_EXTENSIONS if raw.get(e)), None)
    transcript = raw.get("txt", b"").decode("utf-8", "replace").strip()
    reference = str(sample_meta(raw).get("reference") or "").strip()
    return (audio, transcript, reference) if audio and transcript else None


def iter_clips(shards: str | Sequence[str], split: str | None = None, val_fraction: float = 0.1
               ) -> Iterator[dict]:
    """{sample_id, audio (16 kHz float32), transcript, reference} of each usable sample, in shard order
    (an undecodable clip is skipped with a warning)."""
    from mmpipe.train.data import expand_shards

    for path in expand_shards(shards):
        for raw in _shard_samples(path):
            found = audio_and_texts(raw)
            key = sample_key(raw)
            if found is None or (split is not None and split_of(key, val_fraction) != split):
                continue
            try:
                audio, _ = decode_audio_bytes(found[0])
            except Exception as e:  # noqa: BLE001 - PyAV raises many types for a broken clip
                log.warning("skipping %s: %s", raw["__key__"], e)
                continue
            yield {"sample_id": key, "audio": audio, "transcript": found[1], "reference": found[2]}


class AudioStream(ShardStream):
    """ShardStream for speech: each sample is what `features.sample` makes of a clip and its texts (for
    asr: input_features, labels, text) plus reference, sample_id, label (the json's `label`, '' when
    absent) and the stream position. Clips longer than the model's window are skipped (their text would
    describe audio the model never hears)."""

    def __init__(self, shards: str | Sequence[str], features: AudioFeatures, split: str | None = "train",
                 val_fraction: float = 0.1, seed: int = 0, shuffle_buffer: int = 1000, repeat: bool = True):
        super().__init__(shards, features, None, split=split, val_fraction=val_fraction, seed=seed,
                         shuffle_buffer=shuffle_buffer, repeat=repeat)
        self.features = features

    def _decode(self, raw: dict, epoch: int) -> dict | None:
        found = audio_and_texts(raw)
        if found is None:
            log.warning("skipping %s: no audio or no transcript", raw["__key__"])
            return None
        try:
            audio, _ = decode_audio_bytes(found[0])
        except Exception as e:  # noqa: BLE001 - PyAV raises many types for a broken clip
            log.warning("skipping %s: undecodable audio (%s)", raw["__key__"], e)
            return None
        config = self.features.config
        if len(audio) > config.max_seconds * AUDIO_SAMPLE_RATE:
            log.info("skipping %s: %.1f s is longer than the model's %d s window", raw["__key__"],
                     len(audio) / AUDIO_SAMPLE_RATE, config.max_seconds)
            return None
        return {**self.features.sample(audio, found[1], found[2]), "reference": found[2],
                "sample_id": sample_key(raw), "label": str(sample_meta(raw).get("label") or "")}
