"""Transcription throughput: (a) the transcribe flow, (b) a bare BatchedInferencePipeline loop and
(c) a bare sequential WhisperModel.transcribe loop, on the same clips in one run.

    .venv/bin/python bench/transcription.py [--copies 4] [--model tiny.en] [--beam 5] [--batch 16]

The clips are the shipped speech clips, each copied with a few ms of extra silence so every copy is
a distinct sample (the flow would otherwise reuse stored transcripts). Prints audio-seconds per
wall-second for each path and the ratios (a)/(b) and (a)/(c).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def make_clips(out: Path, copies: int) -> float:
    from mmpipe.demo.speech import EXPECTED, SPEECH_DIR
    from mmpipe.export import encode_flac
    from mmpipe.stages.audio_decode import decode_clip

    total = 0.0
    for name in [n for n, v in EXPECTED.items() if v == "kept"]:
        audio, _, _ = decode_clip((SPEECH_DIR / name).read_bytes())
        ref = (SPEECH_DIR / name).with_suffix(".txt").read_text()
        for k in range(copies):
            padded = np.concatenate([audio, np.zeros(16 * (k + 1), dtype=np.float32)])
            stem = f"{Path(name).stem}_{k}"
            (out / f"{stem}.flac").write_bytes(encode_flac(padded))
            (out / f"{stem}.txt").write_text(ref)
            total += len(padded) / 16000
    return total


def run_flow(folder: Path, home: Path, args) -> float:
    from flows.transcribe import transcribe_flow

    t = time.perf_counter()
    r = transcribe_flow(str(folder), "bench", home=str(home), whisper_model=args.model, device="cpu",
                        batch_size=args.batch, beam_size=args.beam, short_windows=not args.full_windows)
    assert r["transcribed"] == len(list(folder.glob("*.flac"))), r["transcribed"]
    return time.perf_counter() - t


def _clips(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(folder.glob("*.flac"))]


def run_batched(folder: Path, args) -> float:
    from faster_whisper import BatchedInferencePipeline, decode_audio

    from mmpipe.models.whisper import load_whisper

    pipe = BatchedInferencePipeline(load_whisper(args.model, "cpu", "int8"))
    t = time.perf_counter()
    for data in _clips(folder):
        segments, _ = pipe.transcribe(decode_audio(io.BytesIO(data)), batch_size=args.batch, beam_size=args.beam,
                                      temperature=0.0, vad_filter=True)
        list(segments)
    return time.perf_counter() - t


def run_sequential(folder: Path, args) -> float:
    from faster_whisper import decode_audio

    from mmpipe.models.whisper import load_whisper

    model = load_whisper(args.model, "cpu", "int8")
    t = time.perf_counter()
    for data in _clips(folder):
        segments, _ = model.transcribe(decode_audio(io.BytesIO(data)), beam_size=args.beam, temperature=0.0,
                                       vad_filter=True)
        list(segments)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--full-windows", action="store_true", help="pad every chunk to 30 s, as Whisper does")
    args = ap.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "clips").mkdir()
        (tmp / "warm").mkdir()
        audio_s = make_clips(tmp / "clips", args.copies)
        make_clips(tmp / "warm", 1)
        from mmpipe.home import configure_prefect

        configure_prefect(tmp / "home")
        run_flow(tmp / "warm", tmp / "warmhome", args)  # starts the local API, loads the model: not timed
        run_sequential(tmp / "warm", args)
        t_c = run_sequential(tmp / "clips", args)
        t_b = run_batched(tmp / "clips", args)
        t_a = run_flow(tmp / "clips", tmp / "home", args)
    n = len(list(range(args.copies))) * 10
    a, b, c = audio_s / t_a, audio_s / t_b, audio_s / t_c
    print(f"model={args.model} cpu int8 beam={args.beam} batch={args.batch} clips={n} audio={audio_s:.1f}s "
          f"windows={'30 s' if args.full_windows else 'short'}")
    print(f"(a) transcribe flow (batched across files): {a:6.1f} audio-s/s")
    print(f"(b) BatchedInferencePipeline, file by file: {b:6.1f} audio-s/s")
    print(f"(c) WhisperModel.transcribe, sequential:    {c:6.1f} audio-s/s")
    print(f"ratio (a)/(b) = {a / b:.2f}   ratio (a)/(c) = {a / c:.2f}")


if __name__ == "__main__":
    main()
