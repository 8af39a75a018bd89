"""Make the demo's speech set (development only: needs the espeak-ng program; nothing else in mmpipe does).

    python -m mmpipe.demo.make_speech_set OUT            # writes OUT/speech_set.tar.gz (+ the clips in OUT/clips)

300 short clips (1-4 s, 16 kHz mono, Ogg Opus at 16 kbit/s) from a fixed seed: espeak-ng's English voices
(American, British, Scottish, RP, Caribbean, Lancaster, West Midlands, New York) with its male and female
variants (+m1..+m7, +f1..+f4) at varied speeds and pitches, reading sentences from a small grammar (about
81 words, a few hundred distinct sentences), so a tiny ASR model has something it can learn. 10% of the
clips are bad, 5 of each kind:

    silence            near-silence (a -70 dBFS noise floor); no reference text
    noise              white or brown noise; no reference text
    mismatched         good speech whose reference text is another clip's sentence
    foreign_gibberish  a non-English voice reading made-up syllables (the reference is what it read)
    clipped            good speech amplified 10x and hard-clipped at full scale
    quiet              good speech at about -50 dBFS

Each clip `spNNN.ogg` has its reference in `spNNN.txt` (the sidecar the folder source reads), and
`truth.json` maps each clip's file name to {kind, voice, speed, pitch, text, spoken, duration_s}. The
archive is what mmpipe ships as mmpipe/demo/assets/speech_set.tar.gz; mmpipe.demo.speech.speech_set()
unpacks it. Regenerating with the same espeak-ng (1.51) and PyAV (18.1.0) gives a byte-identical archive;
other versions give the same sentences, voices and kinds in slightly different audio.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SEED = 25
N_CLIPS = 300
BAD_KINDS = ("silence", "noise", "mismatched", "foreign_gibberish", "clipped", "quiet")
N_PER_BAD_KIND = 5
RATE = 16000
BITRATE = 16000
MIN_S, MAX_S = 1.0, 4.0

VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
          "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4")
FOREIGN = ("de", "fr-fr", "es", "it", "pl", "nl", "fi", "tr", "hu", "cs")

# A small grammar: subject, verb phrase, optional place or time.
_DET = ("the", "a", "my", "your", "one")
_ADJ = ("red", "blue", "green", "small", "big", "old", "new", "happy", "quiet", "fast")
_NOUN = ("cat", "dog", "bird", "car", "boat", "house", "tree", "book", "girl", "boy", "man", "woman")
_VERB = ("sees", "finds", "likes", "wants", "opens", "moves", "takes", "paints")
_INTRANS = ("runs", "sleeps", "sings", "waits", "stops", "jumps")
_PLACE = ("in the park", "by the river", "near the school", "on the hill", "at home", "in the garden")
_TIME = ("today", "every morning", "at night", "after lunch", "on sunday")
_MANY = ("some", "many", "these", "those", "all the", "no")  # not numbers: Whisper writes digits
_PLURAL = {"man": "men", "woman": "women"}
_SYLLABLES = ("ka", "lo", "mi", "ze", "pru", "tas", "gre", "vo", "sni", "bal", "dor", "fe", "ru", "kwi", "nto")


def _noun_phrase(rng: random.Random) -> str:
    words = [rng.choice(_DET), rng.choice(_ADJ), rng.choice(_NOUN)] if rng.random() < 0.5 else [
        rng.choice(_DET), rng.choice(_NOUN)]
    if words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return " ".join(words)


def sentence(rng: random.Random) -> str:
    """One sentence of the grammar (lower case, no punctuation: the reference a tiny model can learn)."""
    form = rng.randrange(5)
    if form == 0:
        s = f"{_noun_phrase(rng)} {rng.choice(_VERB)} {_noun_phrase(rng)}"
    elif form == 1:
        s = f"{_noun_phrase(rng)} {rng.choice(_INTRANS)} {rng.choice(_PLACE)}"
    elif form == 2:
        noun = rng.choice(_NOUN)
        s = f"{rng.choice(_MANY)} {rng.choice(_ADJ)} {_PLURAL.get(noun, noun + 's')} are {rng.choice(_PLACE)}"
    elif form == 3:
        s = f"where is {_noun_phrase(rng)}"
    else:
        s = f"{_noun_phrase(rng)} {rng.choice(_INTRANS)} {rng.choice(_TIME)}"
    return s


def gibberish(rng: random.Random) -> str:
    return " ".join("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3)))
                    for _ in range(rng.randint(3, 5)))


def synth(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng's speech for `text`, as float32 16 kHz mono."""
    from faster_whisper import decode_audio

    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", f.name, text],
                       check=True, capture_output=True)
        return decode_audio(f.name, sampling_rate=RATE)


def encode_opus(samples: np.ndarray) -> bytes:
    """Ogg Opus bytes (16 kHz mono, BITRATE bit/s) of float32 samples in [-1, 1]."""
    import av

    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg", options={"fflags": "+bitexact"}) as out:  # no random stream serial
        stream = out.add_stream("libopus", rate=RATE, layout="mono")
        stream.bit_rate = BITRATE
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = RATE
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _speech(rng: random.Random, text_of=sentence) -> tuple[np.ndarray, dict]:
    """A clip within MIN_S..MAX_S from a random voice, speed and pitch (redrawn until it fits)."""
    while True:
        text = text_of(rng)
        voice = f"{rng.choice(VOICES)}+{rng.choice(VARIANTS)}"
        speed, pitch = rng.randint(130, 200), rng.randint(25, 75)
        audio = synth(text, voice, speed, pitch)
        if MIN_S <= len(audio) / RATE <= MAX_S:
            return audio, {"voice": voice, "speed": speed, "pitch": pitch, "text": text, "spoken": text}


def make_clips(seed: int = SEED) -> tuple[dict[str, bytes], dict[str, dict]]:
    """{file name: bytes} (clips and sidecars) and the truth {clip name: metadata}."""
    rng = random.Random(seed)
    kinds = ["good"] * (N_CLIPS - N_PER_BAD_KIND * len(BAD_KINDS)) + [
        k for k in BAD_KINDS for _ in range(N_PER_BAD_KIND)]
    rng.shuffle(kinds)
    files: dict[str, bytes] = {}
    truth: dict[str, dict] = {}
    np_rng = np.random.default_rng(seed)
    for i, kind in enumerate(kinds):
        name = f"sp{i:03d}.ogg"
        if kind in ("silence", "noise"):
            n = int(rng.uniform(MIN_S, MAX_S) * RATE)
            if kind == "silence":
                audio = np_rng.normal(0, 10 ** (-70 / 20), n)
            elif rng.random() < 0.5:
                audio = np_rng.normal(0, 0.2, n)
            else:
                brown = np.cumsum(np_rng.normal(0, 1, n))
                brown -= np.convolve(brown, np.ones(400) / 400, mode="same")  # keep it centred
                audio = 0.3 * brown / np.abs(brown).max()
            meta = {"voice": None, "speed": None, "pitch": None, "text": "", "spoken": ""}
        elif kind == "foreign_gibberish":
            while True:
                text = gibberish(rng)
                voice = f"{rng.choice(FOREIGN)}+{rng.choice(VARIANTS)}"
                speed, pitch = rng.randint(130, 200), rng.randint(25, 75)
                audio = synth(text, voice, speed, pitch)
                if MIN_S <= len(audio) / RATE <= MAX_S:
                    break
            meta = {"voice": voice, "speed": speed, "pitch": pitch, "text": text, "spoken": text}
        else:
            audio, meta = _speech(rng)
            if kind == "clipped":
                audio = np.clip(audio * 10.0, -1.0, 1.0)
            elif kind == "quiet":
                audio = audio * (10 ** (-50 / 20) / max(np.abs(audio).max(), 1e-9))
            elif kind == "mismatched":
                other = sentence(rng)
                while other == meta["spoken"]:
                    other = sentence(rng)
                meta["text"] = other
        audio = np.asarray(audio, dtype=np.float32)
        files[name] = encode_opus(audio)
        if meta["text"]:
            files[name[:-4] + ".txt"] = meta["text"].encode()
        truth[name] = {"kind": kind, **meta, "duration_s": round(len(audio) / RATE, 3)}
    return files, truth


def write_archive(path: Path, files: dict[str, bytes], truth: dict[str, dict]) -> None:
    """A reproducible .tar.gz: fixed member order, times and owners."""
    from mmpipe.sources.tars import write_archive as write

    write(path, {"truth.json": json.dumps(truth, indent=1, sort_keys=True).encode(), **dict(sorted(files.items()))})


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python -m mmpipe.demo.make_speech_set OUT")
    out = Path(argv[0])
    (out / "clips").mkdir(parents=True, exist_ok=True)
    files, truth = make_clips()
    for name, data in files.items():
        (out / "clips" / name).write_bytes(data)
    archive = out / "speech_set.tar.gz"
    write_archive(archive, files, truth)
    counts: dict[str, int] = {}
    for t in truth.values():
        counts[t["kind"]] = counts.get(t["kind"], 0) + 1
    sentences = {t["spoken"] for t in truth.values() if t["kind"] == "good"}
    print(f"{archive}: {archive.stat().st_size / 1e6:.2f} MB, {len(truth)} clips {counts}, "
          f"{len(sentences)} distinct good sentences, "
          f"{sum(t['duration_s'] for t in truth.values()) / 60:.1f} min of audio")


if __name__ == "__main__":
    main(sys.argv[1:])
