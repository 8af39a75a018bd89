"""Transcription with faster-whisper, batched ACROSS files.

`BatchedInferencePipeline.transcribe` batches the 30-second chunks of one file; curation sets are
mostly many short clips, so this stage cuts every clip into its VAD speech chunks, pools the chunks
of all clips in a batch, groups them by window length and runs them through the pipeline's batched
`forward` together. Short chunks get short encoder windows (see `window_frames`).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmpipe.models import whisper_batch
from mmpipe.models.whisper import DEFAULT_MODEL, default_compute_type, load_whisper, pick_device
from mmpipe.schema import AUDIO_SAMPLE_RATE as SAMPLE_RATE
from mmpipe.stages.asr_quality import AsrQualityConfig
from mmpipe.stages.audio_decode import clip_of
from mmpipe.stages.base import Stage, set_column

CHUNK_S = 30
# Columns the stage adds (asr_segments is JSON text).
ASR_COLUMNS = {"asr_text": pa.string(), "asr_language": pa.string(), "asr_language_probability": pa.float64(),
               "asr_segments": pa.string(), "asr_avg_logprob": pa.float64(), "asr_no_speech_prob": pa.float64(),
               "asr_compression_ratio": pa.float64()}


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
    multilingual: bool = False

    def resolved(self) -> "TranscribeConfig":
        device = pick_device(self.device)
        return TranscribeConfig(**{**asdict(self), "device": device,
                                   "compute_type": self.compute_type or default_compute_type(device)})

    def decoding_options(self) -> dict:
        """Every option that changes the text (model and compute type are keyed on their own)."""
        return {k: getattr(self, k) for k in ("task", "language", "beam_size", "temperature", "vad",
                                              "short_windows", "multilingual")}

    def options_key(self) -> str:
        """A short stable hash of decoding_options(): transcripts are reused only when it matches."""
        blob = json.dumps(self.decoding_options(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def window_frames(n_frames: int, short: bool) -> int:
    """Encoder window for a chunk: Whisper's 30 s (3000 frames), or with `short` the chunk plus 2 s,
    rounded up to 5 s buckets. The encoder's cost grows faster than linearly with the window, and
    short clips padded to 30 s spend most of it on silence (whisper.cpp's audio_ctx idea)."""
    if not short:
        return 3000
    return min(3000, ((n_frames + 200 + 499) // 500) * 500)


def _speech_spans(audio: np.ndarray, use_vad: bool) -> list[dict]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if use_vad:
        return get_speech_timestamps(audio, VadOptions(max_speech_duration_s=CHUNK_S, min_silence_duration_ms=160))
    step = CHUNK_S * SAMPLE_RATE
    return [{"start": s, "end": min(len(audio), s + step)} for s in range(0, len(audio), step)]


class Transcriber(Stage):
    """faster-whisper over many clips at once; the model is loaded once per process.

    As a stage it transcribes the kept rows of a batch (column `audio`, from DecodeAudio) whose
    `asr_text` is still null, so transcripts already known can be filled in beforehand.
    """

    name = "transcribe"
    version = "1"

    def __init__(self, config: TranscribeConfig):
        self.config = config.resolved()
        self.model = None

    def setup(self) -> None:
        from faster_whisper import BatchedInferencePipeline

        whisper_batch.check_compatible()
        self.model = load_whisper(self.config.model, self.config.device, self.config.compute_type)
        self.pipeline = BatchedInferencePipeline(self.model)

    def __call__(self, batch: pa.Table) -> pa.Table:
        for col, typ in ASR_COLUMNS.items():
            if col not in batch.column_names:
                batch = set_column(batch, col, pa.nulls(batch.num_rows, typ))
        todo = pc.indices_nonzero(pc.and_(pc.fill_null(batch["keep"], True), pc.is_null(batch["asr_text"])))
        todo = todo.to_pylist()
        if not todo:
            return batch
        results = self.transcribe([clip_of(batch, i) for i in todo])
        cols = {c: batch[c].to_pylist() for c in ASR_COLUMNS}
        for i, r in zip(todo, results):
            for c in ASR_COLUMNS:
                value = r.get(c[len("asr_"):])
                cols[c][i] = json.dumps(value) if c == "asr_segments" else value
        for c, typ in ASR_COLUMNS.items():
            batch = set_column(batch, c, pa.array(cols[c], typ))
        return batch

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
        from faster_whisper.vad import SpeechTimestampsMap

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
            pieces, metas = whisper_batch.speech_pieces(audio, spans, SAMPLE_RATE, CHUNK_S)
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
            q = AsrQualityConfig()
            opts = whisper_batch.options(tokenizer, beam_size=self.config.beam_size,
                                         temperature=self.config.temperature, multilingual=self.config.multilingual,
                                         log_prob_threshold=q.log_prob_threshold,
                                         no_speech_threshold=q.no_speech_threshold,
                                         compression_ratio_threshold=q.compression_ratio_threshold)
            for s in range(0, len(chunks), self.config.batch_size):
                batch = chunks[s: s + self.config.batch_size]
                segs = whisper_batch.decode_batch(self.pipeline, np.stack([c[1] for c in batch]), tokenizer,
                                                  [c[2] for c in batch], opts)
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


_STORED = {"asr_text": "text", "asr_language": "language", "asr_language_probability": "language_probability",
           "asr_segments": "segments", "asr_avg_logprob": "avg_logprob", "asr_no_speech_prob": "no_speech_prob",
           "asr_compression_ratio": "compression_ratio"}


def known_columns(batch: pa.Table, known: dict[str, dict]) -> pa.Table:
    """Fill the asr_* columns of rows whose transcript is already stored (so they are not transcribed again)."""
    ids = batch["sample_id"].to_pylist()
    for col, field in _STORED.items():
        values = [(known.get(s) or {}).get(field) for s in ids]
        if col == "asr_segments":
            values = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
        batch = set_column(batch, col, pa.array(values, ASR_COLUMNS[col]))
    return batch


def transcript_rows(batch: pa.Table, known: dict[str, dict], config: TranscribeConfig, run_id: str) -> list[dict]:
    """Rows for the `transcripts` table of the clips transcribed now, with WER/CER against their reference."""
    from mmpipe.evaluate.asr import wer_cer

    rows, seen = [], set(known)
    for r in batch.select(["sample_id", "text", "duration_s", *ASR_COLUMNS]).to_pylist():
        if r["asr_text"] is None or r["sample_id"] in seen:
            continue
        seen.add(r["sample_id"])
        w, c = wer_cer(r["text"], r["asr_text"])
        rows.append({"sample_id": r["sample_id"], "model": config.model, "compute_type": config.compute_type,
                     "task": config.task, "options": json.dumps(config.decoding_options(), sort_keys=True),
                     "options_key": config.options_key(), "wer": w, "cer": c, "run_id": run_id,
                     "duration_s": r["duration_s"], **{field: r[col] for col, field in _STORED.items()}})
    return rows
