"""Audio decoding: `mmpipe.audio_io.decode_audio_bytes` (PyAV, resampled to 16 kHz mono) against
faster-whisper's `decode_audio`, which it replaced in the decode stage, the training stream and export, on
the same encoded clips in one process that holds what a flow worker holds (torch, transformers, Prefect).

faster-whisper ends every clip with a full `gc.collect()`, whose cost grows with every object the process
holds; ours leaves collection to Python. The two are checked to give the same samples on every clip.

    PYTHONPATH=$PWD .venv/bin/python bench/audio_decode.py --clips 300

Prints ms per clip of each and the ratio baseline/ours (above 1: ours is faster).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=300)
    args = p.parse_args()
    import prefect  # noqa: F401  - what a flow worker holds
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from faster_whisper import decode_audio

    from mmpipe.audio_io import decode_audio_bytes
    from mmpipe.demo.speech import speech_set

    folder = tempfile.mkdtemp()
    truth = speech_set(folder)
    names = sorted(truth)
    data = [open(f"{folder}/{names[i % len(names)]}", "rb").read() for i in range(args.clips)]
    for d in data[:50]:
        assert np.array_equal(decode_audio(io.BytesIO(d)), decode_audio_bytes(d)[0])
    t = time.perf_counter()
    for d in data:
        decode_audio_bytes(d)
    ours = (time.perf_counter() - t) / len(data)
    t = time.perf_counter()
    for d in data:
        decode_audio(io.BytesIO(d))
    base = (time.perf_counter() - t) / len(data)
    print(f"{len(data)} clips (the speech set's Ogg Opus, 1-4 s), same samples on the 50 compared")
    print(f"  ours (decode_audio_bytes):         {ours * 1000:.2f} ms/clip")
    print(f"  baseline (faster_whisper decode):  {base * 1000:.2f} ms/clip")
    print(f"  ratio baseline/ours:               {base / ours:.1f}x")


if __name__ == "__main__":
    main()
