"""The shipped speech set (issue 25): its counts and share of bad audio, that every clip decodes the way
the transcribe flow decodes it, its size cap, and that tiny.en understands its good clips."""

from __future__ import annotations

from collections import Counter

import pytest

from mmpipe.demo.speech import SPEECH_SET, SPEECH_SET_BAD_KINDS, speech_set, speech_set_truth
from mmpipe.evaluate.asr import corpus_wer
from mmpipe.sources.folder import scan_folder
from mmpipe.stages.audio_decode import decode_clip

SIZE_CAP = 3_000_000


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech_set")
    return folder, speech_set(folder)


def test_counts_share_of_bad_audio_and_size(unpacked):
    folder, truth = unpacked
    assert truth == speech_set_truth()
    assert SPEECH_SET.stat().st_size <= SIZE_CAP
    kinds = Counter(t["kind"] for t in truth.values())
    assert len(truth) == 300 and kinds["good"] == 270
    assert {k: kinds[k] for k in SPEECH_SET_BAD_KINDS} == dict.fromkeys(SPEECH_SET_BAD_KINDS, 5)
    assert sum(kinds.values()) == len(truth)
    good = [t for t in truth.values() if t["kind"] == "good"]
    assert len({t["text"] for t in good}) >= 200  # varied sentences ...
    assert len({w for t in good for w in t["text"].split()}) <= 100  # ... over a small vocabulary
    assert len({t["voice"] for t in good}) >= 40 and any("+f" in t["voice"] for t in good)
    # the folder is a transcribe-flow source as it is: every clip, a reference where the truth has one
    entries = {e.source_key: e for e in scan_folder(folder, require_text=False)}
    assert set(entries) == set(truth)
    for key, t in truth.items():
        assert (entries[key].text or "") == t["text"] and entries[key].problem is None
        assert (t["text"] == t["spoken"]) == (t["kind"] != "mismatched")
        assert (t["text"] == "") == (t["kind"] in ("silence", "noise"))


def test_every_clip_decodes_to_16k_audio_of_the_promised_length(unpacked):
    folder, truth = unpacked
    for key, t in truth.items():
        audio, _, duration = decode_clip((folder / key).read_bytes())  # the transcribe flow's decoder
        assert audio.dtype.name == "float32" and audio.ndim == 1
        assert duration == len(audio) / 16000 and 1.0 <= duration <= 4.0 and abs(duration - t["duration_s"]) < 0.03
        peak = float(abs(audio).max())
        if t["kind"] == "silence":
            assert peak < 0.01, key
        elif t["kind"] == "quiet":
            assert peak < 0.02, key
        elif t["kind"] == "clipped":
            assert peak > 0.9, key
        elif t["kind"] in ("good", "mismatched"):
            assert 0.05 < peak, key


def test_tiny_en_understands_the_good_clips(unpacked):
    from mmpipe.stages.transcribe import TranscribeConfig, Transcriber

    folder, truth = unpacked
    keys = [k for k, t in sorted(truth.items()) if t["kind"] == "good"][:5]
    # Whisper's own 30 s window: with the flow's default short windows (5 s for these 1-4 s clips) tiny.en
    # often repeats a clip's sentence several times over (see bench/RESULTS.md, "Speech set (issue 25)")
    transcriber = Transcriber(TranscribeConfig(model="tiny.en", device="cpu", batch_size=8, short_windows=False))
    transcriber.setup()
    results = transcriber.transcribe([decode_clip((folder / k).read_bytes())[0] for k in keys])
    hyps = [r["text"] for r in results]
    assert corpus_wer([truth[k]["text"] for k in keys], hyps) < 0.5, hyps  # 0.23 on these 5; 0.43 over all 270 good clips


def test_the_quick_split_keeps_every_bad_clip_and_the_first_good_ones(tmp_path):
    from mmpipe.demo.speech import split_speech_set

    pool, holdout, truth = split_speech_set(tmp_path, good_clips=12)
    good = sorted(k for k, t in truth.items() if t["kind"] == "good")[:12]
    clips = {p.name for p in pool.glob("*.ogg")}
    assert {p.name for p in holdout.glob("*.ogg")} == set(good[::6])
    assert clips == (set(good) - set(good[::6])) | {k for k, t in truth.items() if t["kind"] != "good"}
    assert all((pool / name).with_suffix(".txt").is_file() for name in set(good) & clips)  # references go along
