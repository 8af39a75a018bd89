"""The one adapter over faster-whisper internals that cross-file batching needs.

`BatchedInferencePipeline.transcribe` batches the 30-second chunks of ONE file. To batch the
speech chunks of MANY clips together we call three of its internals: `collect_chunks` (VAD spans
to audio pieces), `BatchedInferencePipeline.forward` (one batch of features through the decoder)
and `TranscriptionOptions`. They are not public API, so they are reached only here, options are
built from the public `transcribe()` signature's own defaults (no hand copy of its fields), and
`check_compatible()` (run by the tests and at model load) fails loudly when a faster-whisper
upgrade changes them.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np

TESTED_VERSION = "1.2.1"
# What BatchedInferencePipeline.transcribe itself fixes, whatever its arguments.
_PIPELINE_FIXED = {"condition_on_previous_text": False, "prompt_reset_on_temperature": 0.5,
                   "max_initial_timestamp": 0.0, "hallucination_silence_threshold": None, "clip_timestamps": []}


class IncompatibleFasterWhisper(RuntimeError):
    """The installed faster-whisper no longer has the internals this adapter uses."""


def check_compatible() -> None:
    """Raise IncompatibleFasterWhisper, naming what changed, unless the internals are as expected."""
    import faster_whisper
    from faster_whisper import BatchedInferencePipeline
    from faster_whisper.transcribe import TranscriptionOptions
    from faster_whisper.vad import collect_chunks

    problems = []
    fields = {f.name for f in dataclasses.fields(TranscriptionOptions)}
    public = set(inspect.signature(BatchedInferencePipeline.transcribe).parameters)
    unknown = fields - public - set(_PIPELINE_FIXED) - {"temperatures"}
    if unknown:
        problems.append(f"TranscriptionOptions has fields transcribe() does not take: {sorted(unknown)}")
    forward = list(inspect.signature(BatchedInferencePipeline.forward).parameters)
    if forward != ["self", "features", "tokenizer", "chunks_metadata", "options"]:
        problems.append(f"BatchedInferencePipeline.forward{tuple(forward)} changed")
    chunks = list(inspect.signature(collect_chunks).parameters)
    if chunks[:3] != ["audio", "chunks", "sampling_rate"] or "max_duration" not in chunks:
        problems.append(f"collect_chunks{tuple(chunks)} changed")
    if problems:
        raise IncompatibleFasterWhisper(
            f"faster-whisper {faster_whisper.__version__} (tested: {TESTED_VERSION}): " + "; ".join(problems))


def options(tokenizer, **overrides):
    """TranscriptionOptions with transcribe()'s defaults, the batched pipeline's fixed values and
    `overrides` (beam_size, temperature, multilingual, thresholds ...)."""
    from faster_whisper import BatchedInferencePipeline
    from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

    defaults = {k: p.default for k, p in inspect.signature(BatchedInferencePipeline.transcribe).parameters.items()
                if p.default is not inspect.Parameter.empty}
    values = {**defaults, **_PIPELINE_FIXED, **overrides}
    temperature = values.pop("temperature", 0.0)
    values["temperatures"] = list(temperature[:1]) if isinstance(temperature, (list, tuple)) else [temperature]
    if values.get("suppress_tokens"):
        values["suppress_tokens"] = get_suppressed_tokens(tokenizer, values["suppress_tokens"])
    return TranscriptionOptions(**{f.name: values[f.name] for f in dataclasses.fields(TranscriptionOptions)})


def speech_pieces(audio: np.ndarray, spans: list[dict], sample_rate: int, max_s: int) -> tuple[list, list]:
    """The audio of each speech span merged into pieces of at most `max_s`, and their metadata."""
    from faster_whisper.vad import collect_chunks

    return collect_chunks(audio, spans, sampling_rate=sample_rate, max_duration=max_s)


def decode_batch(pipeline, features: np.ndarray, tokenizer, metas: list[dict], opts) -> list[list[dict]]:
    """Segments (dicts with text, tokens, avg_logprob, no_speech_prob, start, end) per chunk."""
    return pipeline.forward(features, tokenizer, metas, opts)
