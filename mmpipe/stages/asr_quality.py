"""Transcript quality filters with Whisper's own thresholds as defaults."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from mmpipe.stages.base import Filter


@dataclass
class AsrQualityConfig:
    """Whisper's defaults: no_speech_threshold 0.6, log_prob_threshold -1.0, compression_ratio_threshold 2.4."""

    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4


class AsrQuality(Filter):
    """Drops clips without speech, with low-confidence decoding, or with repetitive (hallucinated) text.

    Expects columns asr_text, asr_avg_logprob, asr_no_speech_prob, asr_compression_ratio.
    """

    name = "asr_quality"
    version = "1"

    def __init__(self, config: AsrQualityConfig | None = None):
        super().__init__()
        self.config = config or AsrQualityConfig()

    def reason(self, text: str | None, avg_logprob: float | None, no_speech: float | None,
               compression: float | None) -> str | None:
        """Whisper's rules, in its order: silence, repetition, low confidence."""
        c = self.config
        if not (text or "").strip() or avg_logprob is None:
            return "no_speech"
        if no_speech is not None and no_speech > c.no_speech_threshold and avg_logprob < c.log_prob_threshold:
            return "no_speech"
        if compression is not None and compression > c.compression_ratio_threshold:
            return "asr_repetition"
        if avg_logprob < c.log_prob_threshold:
            return "asr_low_confidence"
        return None

    def decide(self, batch: pa.Table):
        cols = [batch[c].to_pylist() for c in ("asr_text", "asr_avg_logprob", "asr_no_speech_prob",
                                               "asr_compression_ratio")]
        return [self.reason(*row) for row in zip(*cols)], batch["asr_avg_logprob"].to_pylist()
