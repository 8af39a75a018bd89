"""A curation or transcription run's request as one value: its settings with their defaults, the stage
configs they give, the parameters that define the run, and the result a flow returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mmpipe.models import whisper
from mmpipe.models.names import CLIP_MODEL as DEFAULT_MODEL, CLIP_PRETRAINED as DEFAULT_PRETRAINED
from mmpipe.schema import MAX_PIXELS
from mmpipe.sources import SourceSpec
from mmpipe.stages.asr_quality import AsrQualityConfig
from mmpipe.stages.audio_decode import AudioDecodeConfig
from mmpipe.stages.basic import BasicFilterConfig
from mmpipe.stages.clip_filter import ClipFilterConfig
from mmpipe.stages.clip_score import ClipScoreConfig
from mmpipe.stages.decode import DecodeConfig
from mmpipe.stages.dedup import DedupConfig
from mmpipe.stages.transcribe import TranscribeConfig

DEFAULT_KEEP_FRACTION = 0.3  # DataComp's CLIP-score baseline keeps the top 30%
# The settings a curated dataset version records as its filter_spec.
CURATE_FILTER_KEYS = ("min_caption_words", "min_caption_chars", "min_side", "max_aspect_ratio", "max_pixels",
                      "exact_dedup", "dedup_hamming", "clip_model", "clip_pretrained", "min_clip_score",
                      "keep_fraction")
TRANSCRIBE_FILTER_KEYS = ("whisper_model", "task", "language", "vad", "beam_size", "short_windows",
                          "min_duration_s", "max_duration_s", "no_speech_threshold", "log_prob_threshold",
                          "compression_ratio_threshold")


@dataclass(frozen=True)
class CurateRequest:
    """curate_flow's parameters (all but the home), with its defaults: what defines a curation run."""

    source: str
    name: str
    kind: str | None = None
    url_col: str | None = None
    caption_col: str | None = None
    split: str | None = None
    shard_size: int = 512
    min_caption_words: int = 2
    min_caption_chars: int = 5
    min_side: int = 200
    max_aspect_ratio: float = 3.0
    max_pixels: int | None = None
    exact_dedup: bool = True
    dedup_hamming: int | None = 4
    clip_model: str = DEFAULT_MODEL
    clip_pretrained: str | None = DEFAULT_PRETRAINED
    min_clip_score: float | None = None
    keep_fraction: float | None = None
    clip_batch_size: int = 128
    clip_workers: int = 2
    device: str | None = None
    allowed_roots: list[str] | None = None
    out: str | None = None
    incremental: bool = False

    def __post_init__(self) -> None:
        if self.scoring and self.min_clip_score is None and self.keep_fraction is None:
            object.__setattr__(self, "keep_fraction", DEFAULT_KEEP_FRACTION)

    @property
    def scoring(self) -> bool:
        """Whether samples are CLIP-scored and filtered (clip_model "none" turns it off)."""
        return self.clip_model.lower() != "none"

    @property
    def pixel_budget(self) -> int:
        """The pixels an image may decode to: what the basic filter then judges."""
        return max(self.max_pixels or 0, MAX_PIXELS)

    def params(self) -> dict:
        """The run's parameters as the runs table stores them (and a resume matches)."""
        return asdict(self)

    def source_spec(self) -> SourceSpec:
        return SourceSpec(self.source, kind=self.kind, media_col=self.url_col, text_col=self.caption_col,
                          split=self.split, shard_size=self.shard_size, allowed_roots=tuple(self.allowed_roots or ()))

    def decode(self) -> DecodeConfig:
        return DecodeConfig(max_pixels=self.pixel_budget)

    def basic(self) -> BasicFilterConfig:
        return BasicFilterConfig(self.min_caption_words, self.min_caption_chars, self.min_side, self.max_aspect_ratio,
                                 self.max_pixels)

    def dedup(self) -> DedupConfig:
        return DedupConfig(self.exact_dedup, self.dedup_hamming)

    def clip_score(self) -> ClipScoreConfig:
        return ClipScoreConfig(self.clip_model, self.clip_pretrained, self.clip_batch_size, self.clip_workers,
                               self.device, self.pixel_budget)

    def clip_filter(self) -> ClipFilterConfig:
        return ClipFilterConfig(self.min_clip_score, self.keep_fraction)

    def filter_spec(self, pretrained_key: str) -> dict:
        """The filter settings a dataset version records, its CLIP checkpoint named as scores key it."""
        return {**{k: getattr(self, k) for k in CURATE_FILTER_KEYS}, "clip_pretrained": pretrained_key}


@dataclass(frozen=True)
class TranscribeRequest:
    """transcribe_flow's parameters (all but the home), with its defaults: what defines a transcription run."""

    source: str
    name: str
    kind: str | None = None
    url_col: str | None = None
    text_col: str | None = None
    split: str | None = None
    shard_size: int = 64
    whisper_model: str = whisper.DEFAULT_MODEL
    device: str | None = None
    compute_type: str | None = None
    batch_size: int = TranscribeConfig.batch_size
    beam_size: int = TranscribeConfig.beam_size
    task: str = TranscribeConfig.task
    language: str | None = None
    vad: bool = TranscribeConfig.vad
    short_windows: bool = TranscribeConfig.short_windows
    multilingual: bool = TranscribeConfig.multilingual
    min_duration_s: float = AudioDecodeConfig.min_duration_s
    max_duration_s: float = AudioDecodeConfig.max_duration_s
    no_speech_threshold: float = AsrQualityConfig.no_speech_threshold
    log_prob_threshold: float = AsrQualityConfig.log_prob_threshold
    compression_ratio_threshold: float = AsrQualityConfig.compression_ratio_threshold
    allowed_roots: list[str] | None = None
    out: str | None = None

    def params(self) -> dict:
        """The run's parameters as the runs table stores them (and a resume matches)."""
        return asdict(self)

    def source_spec(self) -> SourceSpec:
        return SourceSpec(self.source, kind=self.kind, media_col=self.url_col, text_col=self.text_col,
                          split=self.split, shard_size=self.shard_size, modality="audio",
                          allowed_roots=tuple(self.allowed_roots or ()))

    def transcribe(self) -> TranscribeConfig:
        return TranscribeConfig(self.whisper_model, self.device, self.compute_type, self.batch_size, self.beam_size,
                                self.task, self.language, self.vad, short_windows=self.short_windows,
                                multilingual=self.multilingual)

    def decode(self) -> AudioDecodeConfig:
        return AudioDecodeConfig(self.min_duration_s, self.max_duration_s)

    def quality(self) -> AsrQualityConfig:
        return AsrQualityConfig(self.no_speech_threshold, self.log_prob_threshold, self.compression_ratio_threshold)

    def filter_spec(self) -> dict:
        """The filter settings a dataset version records."""
        return {k: getattr(self, k) for k in TRANSCRIBE_FILTER_KEYS}


@dataclass
class RunOutcome:
    """What every curation-like run reports at its end: counts by outcome, the run's tallies, its warnings."""

    run_id: str
    home: str
    counts: dict
    tallies: dict
    warnings: list = field(default_factory=list)

    def summary(self) -> dict:
        """run_id, home, ingested, kept, new_samples, outcomes: the head of every such flow's result."""
        return {"run_id": self.run_id, "home": self.home, "ingested": sum(self.counts.values()),
                "kept": self.counts.get("kept", 0), "new_samples": self.tallies["new_samples"],
                "outcomes": self.counts}


def curation_result(outcome: RunOutcome, prepared: list[dict], dataset: dict | None, **end: Any) -> dict:
    """curate_flow's result: the outcome, the samples seen before, the scored count, warnings, the dataset,
    then `end` (report=..., or unchanged=the version an incremental run left as it was)."""
    return {**outcome.summary(), "seen_before": sum(p.get("seen_before", 0) for p in prepared),
            "n_scored": outcome.tallies["n_scored"], "warnings": outcome.warnings, "dataset": dataset, **end}


def transcription_result(outcome: RunOutcome, results: list[dict], wer: Any, dataset: dict, report: str | None,
                         resolved: dict) -> dict:
    """transcribe_flow's result: the outcome, what was transcribed, WER, the dataset, report and model."""
    return {**outcome.summary(), "transcribed": sum(r["transcribed"] for r in results),
            "audio_s": sum(r["audio_s"] for r in results), "wer": wer, "dataset": dataset,
            "warnings": outcome.warnings, "report": report, **resolved}


