"""Fuzzing the front doors with hypothesis (derandomized, bounded): random and mutated bytes as
images, audio, tar members and table manifests, and hostile captions. Nothing crashes; every input
ends kept or dropped with a reason from the vocabulary; memory stays bounded."""

from __future__ import annotations

import io
import json
import resource
import tarfile

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mmpipe.demo.speech import SPEECH_DIR
from mmpipe.schema import DROP_REASONS, batch_from_rows
from mmpipe.sources import SourceSpec, plan_shards, read_shard
from mmpipe.stages.audio_decode import AudioDecodeConfig, DecodeAudio
from mmpipe.stages.basic import BasicFilter
from mmpipe.stages.decode import DecodeImages

FUZZ = settings(derandomize=True, deadline=None, max_examples=400,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 40, 90)).save(buf, fmt)
    return buf.getvalue()


SEEDS = [_image(f) for f in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF")]
def _first_second(name: str, fmt: str, codec: str) -> bytes:
    """The first second of a demo clip, re-encoded in its own format: a whole, valid file of each kind
    (header, frames, trailer) to mutate, at a quarter of the 4 s clips' decoding time."""
    import av

    out = io.BytesIO()
    with av.open(str(SPEECH_DIR / name)) as src, av.open(out, "w", format=fmt) as dst:
        stream = dst.add_stream(codec, rate=src.streams.audio[0].rate)
        stream.layout = "mono"
        samples = 0
        for frame in src.decode(audio=0):
            if samples >= frame.sample_rate:
                break
            frame.pts = None
            samples += frame.samples
            for packet in stream.encode(frame):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return out.getvalue()


AUDIO = [_first_second(*args) for args in (("clip00.flac", "flac", "flac"), ("clip07.wav", "wav", "pcm_s16le"),
                                           ("clip04.mp3", "mp3", "mp3"))]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed file with random byte flips, a random cut, and random bytes spliced in."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=64))
    return bytes(data)


def _accounted(batch: pa.Table) -> None:
    for keep, reason in zip(batch["keep"].to_pylist(), batch["drop_reason"].to_pylist()):
        assert keep is True or (keep is False and reason in DROP_REASONS), (keep, reason)


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=2048), mutated(SEEDS)), min_size=1, max_size=6))
def test_image_bytes_are_decoded_or_dropped_with_a_reason(blobs):
    rows = [{"sample_id": f"s{i}", "content": b, "text": "a picture of noise", "keep": True} for i, b in enumerate(blobs)]
    out = BasicFilter()(DecodeImages()(batch_from_rows(rows)))
    _accounted(out)


def test_the_audio_seeds_are_whole_clips_that_decode_and_are_kept():
    rows = [{"sample_id": f"a{i}", "content": b, "keep": True, "modality": "audio"} for i, b in enumerate(AUDIO)]
    out = DecodeAudio(AudioDecodeConfig(min_duration_s=0.1))(batch_from_rows(rows))
    assert out["keep"].to_pylist() == [True] * 3, out["drop_reason"].to_pylist()


@settings(derandomize=True, deadline=None, max_examples=120,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.binary(max_size=2048), mutated(AUDIO)), min_size=1, max_size=3))
def test_audio_bytes_are_decoded_or_dropped_with_a_reason(blobs):
    rows = [{"sample_id": f"a{i}", "content": b, "keep": True, "modality": "audio"} for i, b in enumerate(blobs)]
    _accounted(DecodeAudio(AudioDecodeConfig(min_duration_s=0.1))(batch_from_rows(rows)))


NAMES = st.one_of(st.text(min_size=1, max_size=40), st.sampled_from(
    ["../../etc/passwd.jpg", "/abs/path.jpg", "a/b/../c.txt", ".hidden.jpg", "x" * 200 + ".jpg", "k.JPG", "k.txt",
     "k.json", "k", "dir/", "k.tar.gz.jpg"]))


@FUZZ
@given(st.lists(st.tuples(NAMES, st.one_of(st.binary(max_size=512), mutated(SEEDS))), min_size=1, max_size=8),
       st.one_of(st.none(), st.integers(0, 4000)))
def test_any_tar_is_read_without_a_crash_and_accounted(tmp_path_factory, members, cut):
    path = tmp_path_factory.mktemp("tar") / "s.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    if cut is not None:
        path.write_bytes(path.read_bytes()[:cut])
    spec = SourceSpec(str(path), kind="webdataset")
    for shard in plan_shards(spec):
        batch, _ = read_shard(spec, shard, "fuzz")
        _accounted(DecodeImages()(batch))
        assert all(not k.startswith("/") and ".." not in k.split("/") or k.startswith("s.tar/")
                   for k in batch["source_key"].to_pylist())


CAPTIONS = st.one_of(st.binary(max_size=200), st.text(max_size=200),
                     st.just("\x00\x1b[31mred\x07" * 10), st.just("é" * 100_000))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["ok.jpg", "missing.jpg", "/etc/passwd", "", "../x.jpg"]), CAPTIONS),
                min_size=1, max_size=5), st.sampled_from(["csv", "jsonl", "parquet"]),
       st.one_of(st.none(), st.integers(0, 200)))
def test_any_table_is_a_clear_error_or_fully_accounted(tmp_path_factory, rows, fmt, flip):
    root = tmp_path_factory.mktemp("table")
    (root / "ok.jpg").write_bytes(SEEDS[0])
    path = root / f"t.{fmt}"
    if fmt == "parquet":
        import pyarrow.parquet as pq

        caps = [c if isinstance(c, bytes) else c.encode("utf-8") for _, c in rows]
        pq.write_table(pa.table({"url": [u for u, _ in rows], "caption": pa.array(caps, pa.binary())}), path)
    elif fmt == "csv":
        body = b"url,caption\n" + b"".join(u.encode() + b",\"" + (c if isinstance(c, bytes) else c.encode())
                                             .replace(b'"', b'""') + b"\"\n" for u, c in rows)
        path.write_bytes(body)
    else:
        path.write_bytes(b"".join(json.dumps({"url": u}).encode()[:-1] + b', "caption": "' +
                                  (c if isinstance(c, bytes) else c.encode()).replace(b'"', b"'") + b'"}\n'
                                  for u, c in rows))
    if flip is not None:
        data = bytearray(path.read_bytes())
        if data:
            data[flip % len(data)] ^= 0xFF
            path.write_bytes(bytes(data))
    spec = SourceSpec(str(path))
    try:
        shards = plan_shards(spec, root / "parts")
    except (ValueError, FileNotFoundError) as e:  # a clear error before any work (the run never starts)
        assert str(e)
        return
    batches = []
    for shard in shards:
        try:
            batches.append(read_shard(spec, shard, "fuzz")[0])
        except (ValueError, OSError) as e:  # a Parquet row group that cannot be read: named, not a crash
            assert str(e)
    for b in batches:
        _accounted(b)
        assert all(r != "missing_caption" or t is None for r, t in zip(b["drop_reason"].to_pylist(),
                                                                          b["text"].to_pylist()))


def test_fuzzing_keeps_memory_bounded():
    """After everything above in this process, peak RSS stays far from what a hostile input could take."""
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert peak_mb < 4096, peak_mb
