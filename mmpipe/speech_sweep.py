"""The speech sweep: which transcription-quality threshold to curate speech with, judged by the asr student
trained on what each threshold keeps (Distil-Whisper keeps only pseudo-labels that pass a quality bar; this
chooses the bar by downstream WER at equal samples seen, with the image sweep's one-standard-error rule).

A setting selects from a pool version's stored transcript quality (its manifest's avg_logprob,
no_speech_prob and wer columns), so a sweep never transcribes twice.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# rule -> (manifest column, keep when the value is at least (True) or at most (False) the threshold)
RULES = {"min_avg_logprob": ("avg_logprob", True), "max_no_speech_prob": ("no_speech_prob", False),
         "max_wer": ("wer", False), "keep_fraction": (None, True)}
# A pool keeps every clip Whisper transcribed to some text: its quality thresholds are off.
POOL_QUALITY = {"no_speech_threshold": 1.0, "log_prob_threshold": -1e9, "compression_ratio_threshold": 1e9}


@dataclass(frozen=True)
class SpeechSetting:
    """One curation choice: a transcript-quality rule and its threshold (keep_fraction=1: no filtering).
    max_wer applies where a clip has a reference (a clip without one has no WER and is kept)."""

    whisper_model: str
    rule: str
    value: float

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}: one of {', '.join(RULES)}")
        if self.rule == "keep_fraction" and self.value != 1.0:
            raise ValueError("a speech sweep's keep_fraction setting is 1 (no filtering)")

    @property
    def label(self) -> str:
        return f"{self.rule}={self.value:g}"

    def select(self, candidates: list[dict]) -> list[str]:
        """The sample ids this setting keeps from manifest rows (order kept)."""
        column, at_least = RULES[self.rule]
        if column is None:
            return [c["sample_id"] for c in candidates]
        out = []
        for c in candidates:
            v = c.get(column)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                if self.rule == "max_wer":  # no reference, no WER: nothing to judge it by
                    out.append(c["sample_id"])
                continue
            if (v >= self.value) if at_least else (v <= self.value):
                out.append(c["sample_id"])
        return out

    def filter_spec(self, parent: str, excluded: str) -> dict:
        """The filter_spec of the version this setting derives from the pool `parent`, without `excluded`."""
        return {"whisper_model": self.whisper_model, self.rule: self.value, "parent": parent, "excluded": excluded}

    def row(self, dataset: dict) -> dict:
        """This setting's row of the sweep's table (as the image sweep's rows, `model` the Whisper model)."""
        return {"setting": self.label, "model": self.whisper_model, "rule": self.rule, "value": self.value,
                "version": dataset["version"], "dataset_id": dataset["dataset_id"], "n_samples": dataset["n_samples"]}


@dataclass(frozen=True)
class SpeechSweepRequest:
    """speech_sweep_flow's parameters (all but the home), with its defaults: what defines a speech sweep run."""

    source: str
    name: str
    eval_dataset: str
    min_avg_logprobs: list[float] | None = None
    max_no_speech_probs: list[float] | None = None
    max_wers: list[float] | None = None
    unfiltered: bool = True
    whisper_model: str = "tiny.en"
    samples_seen: int = 3200
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    metric: str = "wer"
    transcribe: dict | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if not (self.min_avg_logprobs or self.max_no_speech_probs or self.max_wers):
            raise ValueError("give the thresholds to sweep: min_avg_logprobs, max_no_speech_probs and/or max_wers")

    def params(self) -> dict:
        """The run's parameters as the runs table stores them (and a resume matches)."""
        return asdict(self)

    def settings(self) -> list[SpeechSetting]:
        """One setting per threshold, plus no filtering when `unfiltered`."""
        m = self.whisper_model
        return ([SpeechSetting(m, "min_avg_logprob", v) for v in self.min_avg_logprobs or []]
                + [SpeechSetting(m, "max_no_speech_prob", v) for v in self.max_no_speech_probs or []]
                + [SpeechSetting(m, "max_wer", v) for v in self.max_wers or []]
                + ([SpeechSetting(m, "keep_fraction", 1.0)] if self.unfiltered else []))

    def pool_options(self) -> dict:
        """The transcribe flow's options for the pool: the user's, with the quality thresholds off."""
        return {**(self.transcribe or {}), "whisper_model": self.whisper_model, "device": self.device, **POOL_QUALITY}

    def train_recipe(self, home: str, eval_dataset: str) -> dict:
        """Every student's training flow arguments but the dataset: the same recipe and evaluation set."""
        return {"home": home, "samples": self.samples_seen, "batch_size": self.batch_size, "lr": self.lr,
                "seed": self.seed, "device": self.device, "eval_dataset": eval_dataset}
