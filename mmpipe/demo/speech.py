"""The shipped speech clips: espeak-ng voices at several speeds (16 kHz, with their source text),
plus bad inputs: silence, noise, zero bytes, a truncated FLAC, a header-only FLAC, text named .wav,
stereo 44.1 kHz and 8 kHz telephone-rate copies.

Regenerate (development only; needs espeak-ng, sox, ffmpeg): see bench/RESULTS.md, "speech clips".

The larger speech set (issue 25): `assets/speech_set.tar.gz` (about 1.1 MB) holds 300 short espeak-ng
clips (1-4 s, 16 kHz mono Ogg Opus) of 8 English voices with male and female variants at varied speeds
and pitches, reading sentences from a small grammar (81 words, a few hundred distinct sentences), each
with its reference in a sidecar .txt; 10% are bad, 5 of each of SPEECH_SET_BAD_KINDS. `speech_set(folder)`
unpacks it into a folder the transcribe flow reads and returns its truth. Made by
`python -m mmpipe.demo.make_speech_set OUT` (development only; needs espeak-ng): see bench/RESULTS.md,
"Speech set (issue 25)".
"""

from __future__ import annotations

import json
from pathlib import Path

SPEECH_DIR = Path(__file__).parent / "assets" / "speech"
SPEECH_SET = Path(__file__).parent / "assets" / "speech_set.tar.gz"
SPEECH_SET_BAD_KINDS = ("silence", "noise", "mismatched", "foreign_gibberish", "clipped", "quiet")

# source key -> the outcome the transcribe flow must record (drop reason or "kept").
EXPECTED = {
    "clip00.flac": "kept", "clip01.flac": "kept", "clip02.flac": "kept", "clip03.flac": "kept",
    "clip04.mp3": "kept", "clip05.ogg": "kept", "clip06.m4a": "kept", "clip07.wav": "kept",
    "stereo_44k.flac": "kept", "phone_8k.wav": "kept",
    "silence.wav": "no_speech", "noise.wav": "no_speech", "empty.wav": "empty_file",
    "truncated.flac": "truncated", "header_only.flac": "decode_error", "not_audio.wav": "decode_error",
}


def speech_set_truth() -> dict[str, dict]:
    """The shipped set's truth, read from the archive: clip file name (the source key the folder source
    gives it) -> {kind ("good" or a bad kind), voice, speed, pitch, text (its reference; "" for none),
    spoken (what the audio says), duration_s}."""
    from mmpipe.sources.tars import read_archive

    return json.loads(read_archive(SPEECH_SET)["truth.json"])


def speech_set(folder: str | Path) -> dict[str, dict]:
    """Unpack the shipped speech set into `folder` (created; the clips `spNNN.ogg` and their reference
    sidecars `spNNN.txt`, nothing else, so the folder is a transcribe-flow source as it is) and return its
    truth (see `speech_set_truth`). Nothing is re-encoded: the archive's bytes are written as they are."""
    from mmpipe.sources.tars import read_archive

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = read_archive(SPEECH_SET)
    truth = json.loads(files.pop("truth.json"))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return truth


def split_speech_set(folder: str | Path, holdout_every: int = 6,
                     good_clips: int | None = None) -> tuple[Path, Path, dict[str, dict]]:
    """The shipped set unpacked into `folder`/pool and `folder`/holdout: every `holdout_every`-th good clip
    (with its reference) goes to the holdout, a clean reference set no training may see (what the speech
    sweep scores its students on); the rest, bad clips included, is the pool. With `good_clips`, only the
    first that many good clips are used (every bad clip still is: the quick demo). Returns (pool, holdout,
    truth), the truth of every shipped clip."""
    import shutil

    folder = Path(folder)
    pool, holdout = folder / "pool", folder / "holdout"
    truth = speech_set(pool)
    holdout.mkdir(parents=True, exist_ok=True)
    good = sorted(k for k, t in truth.items() if t["kind"] == "good")
    for name in good[good_clips:] if good_clips is not None else []:
        for path in (pool / name, (pool / name).with_suffix(".txt")):
            path.unlink(missing_ok=True)
    for name in good[:good_clips][::holdout_every]:
        for path in (pool / name, (pool / name).with_suffix(".txt")):
            shutil.move(str(path), str(holdout / path.name))
    return pool, holdout, truth
