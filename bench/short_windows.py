"""Short encoder windows vs Whisper's 30 s padding: encoder time per window size, and WER of both
on the shipped speech clips.

    .venv/bin/python bench/short_windows.py
"""

from __future__ import annotations

import time

from mmpipe.demo.speech import EXPECTED, SPEECH_DIR
from mmpipe.evaluate.asr import wer_cer
from mmpipe.stages.audio_decode import decode_clip
from mmpipe.stages.transcribe import TranscribeConfig, Transcriber


def main() -> None:
    from faster_whisper.audio import pad_or_trim

    names = [n for n, v in EXPECTED.items() if v == "kept"]
    audios = [decode_clip((SPEECH_DIR / n).read_bytes())[0] for n in names]
    refs = [(SPEECH_DIR / n).with_suffix(".txt").read_text() for n in names]
    results = {}
    for short in (False, True):
        t = Transcriber(TranscribeConfig(model="tiny.en", device="cpu", batch_size=16, short_windows=short))
        t.setup()
        t.transcribe(audios[:1])  # warm
        start = time.perf_counter()
        out = t.transcribe(audios)
        secs = time.perf_counter() - start
        wers = [wer_cer(r, o["text"])[0] for r, o in zip(refs, out)]
        results[short] = (secs, sum(wers) / len(wers))
    model = t.model
    feats = model.feature_extractor(audios[0])[..., :-1]
    for frames in (3000, 1000):
        x = pad_or_trim(feats, frames)[None]
        model.encode(x)
        start = time.perf_counter()
        for _ in range(5):
            model.encode(x)
        print(f"tiny.en encoder, one window of {frames} frames: {(time.perf_counter() - start) / 5 * 1000:.0f} ms")
    audio_s = sum(len(a) for a in audios) / 16000
    for short, (secs, wer) in results.items():
        print(f"{'short windows' if short else '30 s windows '}: {audio_s / secs:5.1f} audio-s/s, "
              f"mean WER {wer:.3f} over {len(names)} clips")
    print(f"ratio short/30s = {results[False][0] / results[True][0]:.2f}")


if __name__ == "__main__":
    main()
