"""Decode and validate audio through faster-whisper's PyAV path: any rate and layout to 16 kHz mono."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mmpipe.schema import AUDIO_SAMPLE_RATE as SAMPLE_RATE
from mmpipe.stages.base import Filter, set_column

AUDIO_TYPE = pa.large_list(pa.float32())


def audio_column(clips: list[np.ndarray | None]) -> pa.Array:
    """16 kHz float32 clips (None for rows without audio) as one Arrow list column, without Python loops."""
    lengths = np.array([0 if c is None else len(c) for c in clips], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = np.concatenate([c for c in clips if c is not None] or [np.zeros(0, np.float32)]).astype(np.float32)
    mask = pa.array([c is None for c in clips])
    return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), pa.array(values, pa.float32()), mask=mask)


def clip_of(batch: pa.Table, i: int) -> np.ndarray:
    """Row i's decoded audio as a float32 array (zero-copy)."""
    return batch["audio"][i].values.to_numpy(zero_copy_only=False)


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
    except (av.error.FFmpegError, ValueError, OSError, AttributeError) as e:
        # AttributeError: PyAV's stream has no codec context (a header naming no codec it knows), so no `rate`
        raise AudioDecodeError("decode_error", str(e)) from e


def decode_clip(content: bytes, config: AudioDecodeConfig | None = None) -> tuple[np.ndarray, int, float]:
    """(16 kHz mono float32 samples, original rate, duration s); raise AudioDecodeError with a reason."""
    from mmpipe.audio_io import decode_audio_bytes

    config = config or AudioDecodeConfig()
    if not content:
        raise AudioDecodeError("empty_file")
    rate, _, declared = probe(content)
    if declared and declared > config.max_duration_s:
        # refused before decoding: an hour of compressed silence decodes to gigabytes of samples
        raise AudioDecodeError("too_long", f"{declared:.1f}s declared > {config.max_duration_s}s")
    try:
        audio, _ = decode_audio_bytes(content)
    except Exception as e:  # noqa: BLE001 - PyAV raises many kinds for broken input
        raise AudioDecodeError("decode_error", str(e)[:200]) from e
    duration = len(audio) / SAMPLE_RATE
    if len(audio) == 0:
        raise AudioDecodeError("zero_length")
    if declared and duration < 0.9 * declared - 0.05:
        raise AudioDecodeError("truncated", f"decoded {duration:.2f}s of a declared {declared:.2f}s")
    if duration < config.min_duration_s:
        raise AudioDecodeError("too_short", f"{duration:.2f}s < {config.min_duration_s}s")
    if duration > config.max_duration_s:
        raise AudioDecodeError("too_long", f"{duration:.1f}s > {config.max_duration_s}s")
    return audio, rate, duration


class DecodeAudio(Filter):
    """Decode each kept row; record duration and original sample rate; add the 16 kHz samples as `audio`."""

    name = "decode"
    version = "1"

    def __init__(self, config: AudioDecodeConfig | None = None):
        super().__init__()
        self.config = config or AudioDecodeConfig()
        self._decoded: dict[str, tuple[np.ndarray, int, float]] = {}

    def decide(self, batch: pa.Table):
        reasons: list = []
        for sid, content in zip(batch["sample_id"].to_pylist(), batch["content"].to_pylist()):
            try:
                self._decoded[sid] = decode_clip(content or b"", self.config)
            except AudioDecodeError as e:
                reasons.append((e.reason, str(e) if str(e) != e.reason else None))
                continue
            reasons.append(None)
        return reasons, None

    def __call__(self, batch: pa.Table) -> pa.Table:
        self._decoded = {}
        out = super().__call__(batch)
        got = [self._decoded.get(s) if k else None for s, k in zip(out["sample_id"].to_pylist(),
                                                                    out["keep"].to_pylist())]
        self._decoded = {}
        out = set_column(out, "sample_rate", pa.array([g[1] if g else r for g, r in
                                                       zip(got, out["sample_rate"].to_pylist())], pa.int32()))
        out = set_column(out, "duration_s", pa.array([g[2] if g else d for g, d in
                                                      zip(got, out["duration_s"].to_pylist())], pa.float64()))
        out = set_column(out, "format", pa.array([_container(c) if g else f for g, c, f in
                                                  zip(got, out["content"].to_pylist(), out["format"].to_pylist())],
                                                 pa.string()))
        return set_column(out, "audio", audio_column([g[0] if g else None for g in got]))


def _container(content: bytes) -> str | None:
    """The audio container's format name (flac, wav, mp3, ogg, mp4 ...), from its bytes."""
    import av

    try:
        with av.open(io.BytesIO(content), metadata_errors="ignore") as container:
            return container.format.name.split(",")[0]
    except Exception:  # noqa: BLE001 - it decoded a moment ago; a name is only informative
        return None
