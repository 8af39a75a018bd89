"""Every input occurrence is accounted for and exported at most once; broken shards and raised limits
inside real flows; audio dedup, transcript reuse by decoding options, and transcription crash-resume."""

from __future__ import annotations

import io
import shutil
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from mmpipe.demo.speech import SPEECH_DIR
from mmpipe.models.clip import TINY_MODEL
from warehouse import Warehouse


def _noise_jpeg(seed: int, side: int = 96) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((side, side), Image.Resampling.NEAREST).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _tar(path, samples: list[tuple[str, bytes, str]]):
    with tarfile.open(path, "w") as tf:
        for key, data, text in samples:
            for name, blob in ((f"{key}.jpg", data), (f"{key}.txt", text.encode())):
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tf.addfile(info, io.BytesIO(blob))
    return path


@pytest.fixture
def curate(prefect_harness):
    from flows.curate import curate_flow

    def run(source, home, **kw):
        kw.setdefault("clip_model", "none")
        kw.setdefault("min_side", 64)
        return curate_flow(source, kw.pop("name", "acc"), home=str(home), **kw)

    return run


def _members(shards_uri: str) -> list[str]:
    from braceexpand import braceexpand

    names = []
    for path in braceexpand(shards_uri):
        with tarfile.open(path) as tf:
            names += [m.name for m in tf if m.name.endswith(".jpg")]
    return names


def test_a_pair_met_twice_is_counted_twice_and_exported_once(curate, tmp_path):
    a, b, c = (_noise_jpeg(i) for i in range(3))
    _tar(tmp_path / "s-0.tar", [("k1", a, "a noisy picture one"), ("k2", b, "a noisy picture two"),
                                ("k2again", b, "a noisy picture two")])  # repeated inside a shard
    _tar(tmp_path / "s-1.tar", [("k3", c, "a noisy picture three"),
                                ("k1again", a, "a noisy picture one")])  # and across shards
    result = curate(str(tmp_path / "s-{0..1}.tar"), tmp_path / "home")
    assert result["ingested"] == 5 and result["kept"] == 3
    assert result["outcomes"] == {"kept": 3, "duplicate": 2}
    wh = Warehouse(tmp_path / "home")
    rows = {r["source_key"]: r for r in wh.query_readonly(
        "SELECT source_key, keep, drop_reason, detail FROM outcomes WHERE run_id = ?", [result["run_id"]]).to_pylist()}
    assert rows["s-0.tar/k2again"]["detail"] == "repeat of s-0.tar/k2"
    assert rows["s-1.tar/k1again"]["detail"] == "repeat of s-0.tar/k1"
    assert rows["s-0.tar/k1"]["keep"] and not rows["s-1.tar/k1again"]["keep"]
    summary = wh.query_readonly("SELECT ingested, kept, dropped FROM run_summary WHERE run_id = ?",
                                [result["run_id"]]).to_pylist()[0]
    assert summary == {"ingested": 5, "kept": 3, "dropped": 2}
    ds = result["dataset"]
    members = _members(ds["shards_uri"])
    assert ds["n_samples"] == 3 and len(members) == len(set(members)) == 3
    assert pq.read_table(ds["manifest_uri"]).num_rows == 3
    assert wh.query_readonly("SELECT count(*) AS n FROM samples").column("n")[0].as_py() == 3


def test_the_ingest_flow_accounts_for_a_repeated_file(prefect_harness, tmp_path):
    from flows.ingest import ingest_flow

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("one.jpg", "copy.jpg"):
        (folder / name).write_bytes(_noise_jpeg(7))
        (folder / name).with_suffix(".txt").write_text("the same picture and caption")
    result = ingest_flow(str(folder), "photos", home=str(tmp_path / "home"))
    assert result["ingested"] == 2 and result["outcomes"] == {"kept": 1, "duplicate": 1}


def test_a_shard_that_breaks_off_ends_the_run_with_a_warning(prefect_harness, tmp_path):
    from mmpipe.cli import app

    _tar(tmp_path / "s-0.tar", [("a", _noise_jpeg(1), "a whole picture")])
    broken = _tar(tmp_path / "s-1.tar", [(f"k{i}", _noise_jpeg(10 + i), f"picture number {i}") for i in range(6)])
    broken.write_bytes(broken.read_bytes()[:3000])
    home = tmp_path / "home"
    out = CliRunner().invoke(app, ["curate", str(tmp_path / "s-{0..1}.tar"), "--name", "b", "--clip-model", "none",
                                   "--min-side", "64", "--home", str(home)])
    assert out.exit_code == 0, out.output
    assert "completed with 1 warning" in out.output and "s-1.tar: " in out.output
    assert "broke off" in out.output or "members after the cut were not read" in out.output
    run = Warehouse(home).query_readonly("SELECT status, warnings FROM run_summary").to_pylist()[0]
    assert run == {"status": "completed_with_warnings", "warnings": 1}


def test_a_broken_shard_warning_outlives_a_crash_and_is_given_once_by_the_resumed_run(prefect_harness, tmp_path,
                                                                                       monkeypatch):
    import flows.curate
    from flows.curate import curate_flow

    _tar(tmp_path / "s-0.tar", [("a", _noise_jpeg(1), "a whole picture")])
    broken = _tar(tmp_path / "s-1.tar", [(f"k{i}", _noise_jpeg(10 + i), f"picture number {i}") for i in range(6)])
    broken.write_bytes(broken.read_bytes()[:3000])
    home, params = str(tmp_path / "home"), {"clip_model": "none", "min_side": 64}
    real = flows.curate.dedup_run

    def crash(*a, **kw):
        raise RuntimeError("killed after reading")

    monkeypatch.setattr(flows.curate, "dedup_run", crash)
    with pytest.raises(Exception, match="killed after reading"):
        curate_flow(str(tmp_path / "s-{0..1}.tar"), "b", home=home, **params)
    monkeypatch.setattr(flows.curate, "dedup_run", real)
    resumed = curate_flow(str(tmp_path / "s-{0..1}.tar"), "b", home=home, **params)
    assert [w["what"] for w in resumed["warnings"]] == ["broken_shard"]  # kept from the first attempt, once
    runs = Warehouse(home).query_readonly("SELECT run_id, status, warnings FROM run_summary").to_pylist()
    assert [(r["run_id"], r["status"], r["warnings"]) for r in runs] == [
        (resumed["run_id"], "completed_with_warnings", 1)]


def test_a_raised_pixel_limit_holds_in_scoring_and_export(curate, tmp_path, tiny_clip_checkpoint):
    from mmpipe.schema import MAX_PIXELS

    folder = tmp_path / "big"
    folder.mkdir()
    side = int(MAX_PIXELS ** 0.5) + 20  # just over Pillow's default budget
    Image.new("RGB", (side, side), (200, 30, 30)).save(folder / "big.png", optimize=False, compress_level=1)
    (folder / "big.txt").write_text("one very large red picture")
    result = curate(str(folder), tmp_path / "home", max_pixels=side * side + 1, clip_model=TINY_MODEL,
                    clip_pretrained=tiny_clip_checkpoint, min_clip_score=-1.0, clip_workers=0)
    assert result["outcomes"] == {"kept": 1} and result["n_scored"] == 1
    assert len(_members(result["dataset"]["shards_uri"])) == 1
    from flows.export import export_flow  # and `mmpipe export` re-encodes it under the same budget

    exported = export_flow(f"acc@{result['dataset']['version']}", home=str(tmp_path / "home"), name="small",
                           resize=32)
    assert exported["dataset"]["n_samples"] == 1


@pytest.fixture
def transcribe(prefect_harness):
    from flows.transcribe import transcribe_flow

    def run(source, home, **kw):
        kw.setdefault("whisper_model", "tiny.en")
        kw.setdefault("device", "cpu")
        return transcribe_flow(source, kw.pop("name", "speech"), home=str(home), **kw)

    return run


def _speech_folder(tmp_path):
    folder = tmp_path / "speech"
    folder.mkdir()
    for name in ("clip00", "clip01", "clip02"):
        shutil.copy(SPEECH_DIR / f"{name}.flac", folder / f"{name}.flac")
        shutil.copy(SPEECH_DIR / f"{name}.txt", folder / f"{name}.txt")
    shutil.copy(SPEECH_DIR / "clip00.flac", folder / "same_audio_other_text.flac")
    (folder / "same_audio_other_text.txt").write_text("a reference that differs")
    shutil.copy(SPEECH_DIR / "clip01.flac", folder / "z_exact_repeat.flac")
    shutil.copy(SPEECH_DIR / "clip01.txt", folder / "z_exact_repeat.txt")
    return folder


def test_audio_copies_are_deduplicated_and_transcripts_reused_only_for_the_same_options(transcribe, tmp_path):
    folder = _speech_folder(tmp_path)
    home = tmp_path / "home"
    first = transcribe(str(folder), home, shard_size=2)
    assert first["outcomes"] == {"kept": 3, "duplicate": 2}
    assert first["transcribed"] == 3 and first["dataset"]["n_samples"] == 3
    same = transcribe(str(folder), home, shard_size=2)
    assert same["transcribed"] == 0
    other = transcribe(str(folder), home, shard_size=2, beam_size=1)
    assert other["transcribed"] == 3  # a decoding option that changes the text: transcribed again
    keys = Warehouse(home).query_readonly("SELECT DISTINCT options_key, options->>'beam_size' AS beam FROM transcripts "
                                          "ORDER BY beam").to_pylist()
    assert [k["beam"] for k in keys] == ["1", "5"] and keys[0]["options_key"] != keys[1]["options_key"]


def test_a_transcription_crash_resumes_to_the_same_dataset(transcribe, tmp_path, monkeypatch):
    from mmpipe.stages.transcribe import Transcriber

    folder = _speech_folder(tmp_path)
    clean = transcribe(str(folder), tmp_path / "clean", shard_size=2)
    real = Transcriber.transcribe
    calls = {"n": 0}

    def die_on_second(self, audios):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed mid-transcription")
        return real(self, audios)

    monkeypatch.setattr(Transcriber, "transcribe", die_on_second)
    home = tmp_path / "crashy"
    with pytest.raises(Exception, match="mid-transcription"):
        transcribe(str(folder), home, shard_size=2)
    monkeypatch.setattr(Transcriber, "transcribe", real)
    resumed = transcribe(str(folder), home, shard_size=2)
    wh = Warehouse(home)
    assert wh.query_readonly("SELECT status FROM runs").column("status").to_pylist() == ["completed"]
    n = wh.query_readonly("SELECT count(*) AS n, count(DISTINCT sample_id) AS d FROM transcripts").to_pylist()[0]
    assert n["n"] == n["d"] == 3
    assert resumed["outcomes"] == clean["outcomes"]
    a = pq.read_table(resumed["dataset"]["manifest_uri"]).select(["sample_id", "transcript"]).to_pylist()
    b = pq.read_table(clean["dataset"]["manifest_uri"]).select(["sample_id", "transcript"]).to_pylist()
    assert a == b
