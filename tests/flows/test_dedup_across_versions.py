"""Nightly runs dedup against what earlier versions of the dataset hold, and every input met (also the
ones an earlier night met) is an occurrence with an outcome."""

from __future__ import annotations

import io
import tarfile

import pytest
import skimage.data
from PIL import Image

from warehouse import Warehouse


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _photo(name: str, side: int = 160) -> Image.Image:
    img = Image.fromarray(getattr(skimage.data, name)())
    img.thumbnail((side, side))
    return img


def _tar(path, samples: list[tuple[str, bytes, str]]):
    with tarfile.open(path, "w") as tf:
        for key, data, text in samples:
            for name, blob in ((f"{key}.jpg", data), (f"{key}.txt", text.encode())):
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tf.addfile(info, io.BytesIO(blob))
    return path


@pytest.fixture
def nights(tmp_path):
    """Night 1: photos A, B, C. Night 2 adds: B resized under its caption, A's bytes under a new caption,
    C's pair again under a new file name, and a new photo D."""
    a, b, c, d = (_photo(n) for n in ("astronaut", "chelsea", "coffee", "rocket"))
    src = tmp_path / "src"
    src.mkdir()
    night1 = [("a", _jpeg(a), "an astronaut in a white suit"), ("b", _jpeg(b), "a ginger cat looking aside"),
              ("c", _jpeg(c), "a cup of coffee on a saucer")]
    _tar(src / "night-1.tar", night1)
    w, h = b.size
    night2 = [("b_small", _jpeg(b.resize((int(w * 0.8), int(h * 0.8)), Image.Resampling.BICUBIC), 80),
               "a ginger cat looking aside"),
              ("a_again", night1[0][1], "a person in a spacesuit"),
              ("c_renamed", night1[2][1], night1[2][2]),
              ("d", _jpeg(d), "a rocket on the launch pad")]
    return src, night2


def _outcomes(wh: Warehouse, run_id: str) -> dict[str, dict]:
    return {r["source_key"]: r for r in wh.query_readonly(
        "SELECT source_key, sample_id, keep, drop_reason, drop_stage, detail FROM outcomes WHERE run_id = ?",
        [run_id]).to_pylist()}


def test_a_night_drops_copies_of_earlier_versions_and_records_inputs_met_before(prefect_harness, nights):
    from flows.curate import curate_flow

    src, night2 = nights
    home = str(src.parent / "home")
    params = {"name": "nightly", "home": home, "clip_model": "none", "min_side": 64, "incremental": True}
    first = curate_flow(str(src), **params)
    assert first["kept"] == 3 and first["dataset"]["version"] == "v1"
    wh = Warehouse(home)
    ids = {k.split("/")[-1]: r["sample_id"] for k, r in _outcomes(wh, first["run_id"]).items()}
    _tar(src / "night-2.tar", night2)
    second = curate_flow(str(src), **params)
    got = _outcomes(wh, second["run_id"])
    assert len(got) == 7  # every input met, the three night 1 met again included
    assert second["ingested"] == 7 == sum(second["outcomes"].values())
    assert second["outcomes"] == {"duplicate": 5, "near_duplicate": 1, "kept": 1}
    for key in ("a", "b", "c"):  # met before, as they were
        row = got[f"night-1.tar/{key}"]
        assert (row["keep"], row["drop_reason"], row["drop_stage"]) == (False, "duplicate", "dedup")
        assert row["detail"] == f"repeat of night-1.tar/{key} (run {first['run_id']})"
    renamed = got["night-2.tar/c_renamed"]  # the same pair under a new name: the same sample, met before
    assert renamed["sample_id"] == ids["c"] and renamed["drop_reason"] == "duplicate"
    assert renamed["detail"] in (f"repeat of night-1.tar/c (run {first['run_id']})", "repeat of night-1.tar/c")
    exact = got["night-2.tar/a_again"]
    assert (exact["drop_reason"], exact["detail"]) == ("duplicate", f"{ids['a']} in nightly@v1")
    near = got["night-2.tar/b_small"]
    assert near["drop_reason"] == "near_duplicate" and near["detail"].startswith(ids["b"] + " hamming=")
    assert near["detail"].endswith(" in nightly@v1")
    assert got["night-2.tar/d"]["keep"]
    v2 = second["dataset"]
    assert v2["version"] == "v2" and v2["n_samples"] == 4  # v1's three and D: no copy of anything
    summary = wh.query_readonly("SELECT ingested, kept, dropped FROM run_summary WHERE run_id = ?",
                                [second["run_id"]]).to_pylist()[0]
    assert summary == {"ingested": 7, "kept": 1, "dropped": 6}
    occurrences = wh.query_readonly("SELECT count(*) AS n FROM occurrences WHERE run_id = ?",
                                    [second["run_id"]]).column("n")[0].as_py()
    assert occurrences == 7


def test_a_full_curation_into_an_existing_name_drops_copies_of_its_versions(prefect_harness, nights, tmp_path):
    from flows.curate import curate_flow

    src, night2 = nights
    home = str(tmp_path / "home")
    first = curate_flow(str(src), "photos", home=home, clip_model="none", min_side=64)
    only_new = tmp_path / "night2"
    only_new.mkdir()
    _tar(only_new / "night-2.tar", night2)
    again = curate_flow(str(only_new), "photos", home=home, clip_model="none", min_side=64)
    got = _outcomes(Warehouse(home), again["run_id"])
    assert {k.split("/")[-1]: r["drop_reason"] for k, r in got.items()} == {
        "b_small": "near_duplicate", "a_again": "duplicate", "c_renamed": None, "d": None}
    # the same sample as v1 holds is that sample, not a twin of itself: the new version has it once
    assert again["dataset"]["n_samples"] == 2 and first["dataset"]["n_samples"] == 3
