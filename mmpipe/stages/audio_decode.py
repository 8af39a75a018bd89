"""Decode and validate audio through faster-whisper's PyAV path: any rate and layout to 16 kHz mono."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mmpipe.stages.base import Filter, set_column

SAMPLE_RATE = 16_000


class AudioDecodeError(Exception):
    """Audio that cannot be used, with its drop reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason


@dataclass
class AudioDecodeConfig:
    """Duration limits in seconds."""

    min_duration_s: float = 0.3
    max_duration_s: float = 600.0


def probe(content: bytes) -> tuple[int, int, float | None]:
    """(original sample rate, channels, duration the container declares) of encoded audio."""
    import av

    try:
        with av.open(io.BytesIO(content), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError("no_audio_stream")
            stream = container.streams.audio[0]
            declared = None
            if stream.duration is not None and stream.time_base is not None:
                declared = float(stream.duration * stream.time_base)
            elif container.duration:
                declared = container.duration / 1_000_000
            return int(stream.rate or 0), int(stream.channels or 0), declared
    except AudioDecodeError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as e:
        raise AudioDecodeError("decode_error", str(e)) from e


def decode_clip(content: bytes, config: AudioDecodeConfig | None = None) -> tuple[np.ndarray, int, float]:
    """(16 kHz mono float32 samples, original rate, duration s); raise AudioDecodeError with a reason."""
    from faster_whisper import decode_audio

    config = config or AudioDecodeConfig()
    if not content:
        raise AudioDecodeError("empty_file")
    rate, _, declared = probe(content)
    try:
        audio = decode_audio(io.BytesIO(content), sampling_rate=SAMPLE_RATE)
    except Exception as e:  # noqa: BLE001 - PyAV raises many kinds for broken input
        raise AudioDecodeError("decode_error", str(e)) from e
    duration = len(audio) / SAMPLE_RATE
    if len(audio) == 0:
        raise AudioDecodeError("zero_length")
    if declared and duration < 0.9 * declared - 0.05:
        raise AudioDecodeError("truncated", f"decoded {duration:.2f}s of a declared {declared:.2f}s")
    if duration < config.min_duration_s:
        raise AudioDecodeError("too_short")
    if duration > config.max_duration_s:
        raise AudioDecodeError("too_long")
    return audio, rate, duration


class DecodeAudio(Filter):
    """Decode each kept row; record duration and original sample rate; keep the 16 kHz samples."""

    name = "decode"
    version = "1"

    def __init__(self, config: AudioDecodeConfig | None = None):
        super().__init__()
        self.config = config or AudioDecodeConfig()
        self.audio: dict[str, np.ndarray] = {}
        self._info: dict[str, tuple[int, float]] = {}

    def decide(self, batch: pa.Table):
        reasons: list[str | None] = []
        for sid, content in zip(batch["sample_id"].to_pylist(), batch["content"].to_pylist()):
            try:
                audio, rate, duration = decode_clip(content or b"", self.config)
            except AudioDecodeError as e:
                reasons.append(e.reason)
                continue
            self.audio[sid] = audio
            self._info[sid] = (rate, duration)
            reasons.append(None)
        return reasons, None

    def __call__(self, batch: pa.Table) -> pa.Table:
        self.audio, self._info = {}, {}
        out = super().__call__(batch)
        info = [self._info.get(s) for s in out["sample_id"].to_pylist()]
        out = set_column(out, "sample_rate", pa.array([i[0] if i else None for i in info], pa.int32()))
        return set_column(out, "duration_s", pa.array([i[1] if i else None for i in info], pa.float64()))
