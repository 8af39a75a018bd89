"""The shipped speech clips: espeak-ng voices at several speeds (16 kHz, with their source text),
plus bad inputs: silence, noise, zero bytes, a truncated FLAC, a header-only FLAC, text named .wav,
stereo 44.1 kHz and 8 kHz telephone-rate copies.

Regenerate (development only; needs espeak-ng, sox, ffmpeg): see bench/RESULTS.md, "speech clips".
"""

from __future__ import annotations

from pathlib import Path

SPEECH_DIR = Path(__file__).parent / "assets" / "speech"

# source key -> the outcome the transcribe flow must record (drop reason or "kept").
EXPECTED = {
    "clip00.flac": "kept", "clip01.flac": "kept", "clip02.flac": "kept", "clip03.flac": "kept",
    "clip04.mp3": "kept", "clip05.ogg": "kept", "clip06.m4a": "kept", "clip07.wav": "kept",
    "stereo_44k.flac": "kept", "phone_8k.wav": "kept",
    "silence.wav": "no_speech", "noise.wav": "no_speech", "empty.wav": "empty_file",
    "truncated.flac": "truncated", "header_only.flac": "decode_error", "not_audio.wav": "decode_error",
}
