"""Transcription with faster-whisper, batched ACROSS files.

`BatchedInferencePipeline.transcribe` batches the 30-second chunks of one file; curation sets are
mostly many short clips, so this stage cuts every clip into its VAD speech chunks, pools the chunks
of all clips in a batch, groups them by window length and runs them through the pipeline's batched
`forward` together. Short chunks get short encoder windows (see `window_frames`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from mmpipe.models.whisper import DEFAULT_MODEL, default_compute_type, load_whisper, pick_device

SAMPLE_RATE = 16_000
CHUNK_S = 30


@dataclass
class TranscribeConfig:
    """Model, device and decoding options; temperature 0 keeps output reproducible."""

    model: str = DEFAULT_MODEL
    device: str | None = None
    compute_type: str | None = None
    batch_size: int = 16
    beam_size: int = 5
    task: str = "transcribe"
    language: str | None = None
    vad: bool = True
    temperature: float = 0.0
    short_windows: bool = True

    def resolved(self) -> "TranscribeConfig":
        device = pick_device(self.device)
        return TranscribeConfig(self.model, device, self.compute_type or default_compute_type(device),
                                self.batch_size, self.beam_size, self.task, self.language, self.vad, self.temperature,
                                self.short_windows)


def window_frames(n_frames: int, short: bool) -> int:
    """Encoder window for a chunk: Whisper's 30 s (3000 frames), or with `short` the chunk plus 2 s,
    rounded up to 5 s buckets. The encoder's cost grows faster than linearly with the window, and
    short clips padded to 30 s spend most of it on silence (whisper.cpp's audio_ctx idea)."""
    if not short:
        return 3000
    return min(3000, ((n_frames + 200 + 499) // 500) * 500)


def _options(tokenizer, config: TranscribeConfig):
    from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

    return TranscriptionOptions(
        beam_size=config.beam_size, best_of=5, patience=1, length_penalty=1, repetition_penalty=1,
        no_repeat_ngram_size=0, log_prob_threshold=-1.0, no_speech_threshold=0.6, compression_ratio_threshold=2.4,
        condition_on_previous_text=False, prompt_reset_on_temperature=0.5, temperatures=[config.temperature],
        initial_prompt=None, prefix=None, suppress_blank=True, suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        without_timestamps=True, max_initial_timestamp=0.0, word_timestamps=False,
        prepend_punctuations="\"'“¿([{-", append_punctuations="\"'.。,，!！?？:：”)]}、", multilingual=False,
        max_new_tokens=None, clip_timestamps=[], hallucination_silence_threshold=None, hotwords=None)


def _speech_spans(audio: np.ndarray, use_vad: bool) -> list[dict]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if use_vad:
        return get_speech_timestamps(audio, VadOptions(max_speech_duration_s=CHUNK_S, min_silence_duration_ms=160))
    step = CHUNK_S * SAMPLE_RATE
    return [{"start": s, "end": min(len(audio), s + step)} for s in range(0, len(audio), step)]


class Transcriber:
    """faster-whisper over many clips at once; the model is loaded once per process."""

    name = "transcribe"
    version = "1"

    def __init__(self, config: TranscribeConfig):
        self.config = config.resolved()
        self.model = None

    def setup(self) -> None:
        from faster_whisper import BatchedInferencePipeline

        self.model = load_whisper(self.config.model, self.config.device, self.config.compute_type)
        self.pipeline = BatchedInferencePipeline(self.model)

    def _language(self, features: list[np.ndarray]) -> tuple[str, float]:
        if self.config.language:
            return self.config.language, 1.0
        if not self.model.model.is_multilingual:
            return "en", 1.0
        lang, prob, _ = self.model.detect_language(features=np.concatenate(features, axis=1))
        return lang, float(prob)

    def transcribe(self, audios: list[np.ndarray]) -> list[dict]:
        """One result per clip: text, language(+probability), segments and Whisper's quality signals."""
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_compression_ratio
        from faster_whisper.vad import SpeechTimestampsMap, collect_chunks

        if self.model is None:
            self.setup()
        results: list[dict] = [{} for _ in audios]
        chunks_by_key: dict[tuple[str, int], list[tuple[int, np.ndarray, dict]]] = defaultdict(list)
        maps = {}
        for i, audio in enumerate(audios):
            spans = _speech_spans(audio, self.config.vad)
            if not spans:
                results[i] = {"text": "", "language": None, "language_probability": None, "segments": [],
                              "avg_logprob": None, "no_speech_prob": 1.0, "compression_ratio": 0.0, "speech": False}
                continue
            maps[i] = SpeechTimestampsMap(spans, SAMPLE_RATE)
            pieces, metas = collect_chunks(audio, spans, max_duration=CHUNK_S)
            feats = [self.model.feature_extractor(p)[..., :-1] for p in pieces]
            lang, prob = self._language(feats)
            results[i] = {"language": lang, "language_probability": prob, "speech": True}
            for f, m in zip(feats, metas):
                frames = window_frames(f.shape[-1], self.config.short_windows)
                chunks_by_key[(lang, frames)].append((i, pad_or_trim(f, frames), m))
        outputs: dict[int, list[dict]] = defaultdict(list)
        for (lang, _), chunks in sorted(chunks_by_key.items()):
            tokenizer = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual, task=self.config.task,
                                  language=lang)
            options = _options(tokenizer, self.config)
            for s in range(0, len(chunks), self.config.batch_size):
                batch = chunks[s: s + self.config.batch_size]
                segs = self.pipeline.forward(np.stack([c[1] for c in batch]), tokenizer, [c[2] for c in batch], options)
                for (i, _, _), chunk_segments in zip(batch, segs):
                    outputs[i] += chunk_segments
        for i, segs in outputs.items():
            text = "".join(s["text"] for s in segs).strip()
            n_tokens = [max(1, len(s["tokens"])) for s in segs]
            results[i].update(
                text=text,
                segments=[{"start": round(maps[i].get_original_time(s["start"]), 3),
                           "end": round(maps[i].get_original_time(s["end"], is_end=True), 3),
                           "text": s["text"].strip()} for s in segs],
                avg_logprob=float(np.average([s["avg_logprob"] for s in segs], weights=n_tokens)),
                no_speech_prob=float(np.mean([s["no_speech_prob"] for s in segs])),
                compression_ratio=float(get_compression_ratio(text)) if text else 0.0)
        return results
