"""Every source kind yields the same batch schema; bad input gets a drop reason, nothing else is lost."""

from __future__ import annotations

import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmpipe.schema import check_batch
from mmpipe.sources import Shard, SourceSpec, detect_kind, plan_shards, read_shard
from mmpipe.sources.fetch import FetchConfig


def _jpeg(color=(200, 10, 10), size=(64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def _tar(path, members: dict[str, bytes], mode="w"):
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _read_all(spec: SourceSpec) -> pa.Table:
    batches = [read_shard(spec, s, "test")[0] for s in plan_shards(spec)]
    for b in batches:
        check_batch(b)
    return pa.concat_tables(batches)


def test_webdataset_tar_tgz_and_brace_patterns(tmp_path):
    for i in range(3):
        _tar(tmp_path / f"shard-{i:06d}.tar", {f"k{i}a.jpg": _jpeg(), f"k{i}a.txt": b"a red square",
                                                f"k{i}b.png": _jpeg(), f"k{i}b.json": b'{"caption": "from json"}'})
    _tar(tmp_path / "packed.tgz", {"z.jpg": _jpeg(), "z.txt": b"gzipped caption"}, mode="w:gz")
    spec = SourceSpec(str(tmp_path / "shard-{000000..000002}.tar"))
    assert detect_kind(spec.path) == "webdataset" and len(plan_shards(spec)) == 3
    batch = _read_all(spec)
    assert batch.num_rows == 6 and all(batch["keep"].to_pylist())
    assert sorted(set(batch["text"].to_pylist())) == ["a red square", "from json"]
    assert batch["source_key"][0].as_py() == "shard-000000.tar/k0a"
    gz = _read_all(SourceSpec(str(tmp_path / "packed.tgz")))
    assert gz["text"].to_pylist() == ["gzipped caption"]
    with pytest.raises(FileNotFoundError, match="not found"):
        plan_shards(SourceSpec(str(tmp_path / "shard-{000000..000009}.tar")))


def test_img2dataset_layout_accounts_for_failed_downloads(tmp_path):
    out = tmp_path / "i2d"
    out.mkdir()
    _tar(out / "00000.tar", {
        "000000000.jpg": _jpeg(), "000000000.txt": b"a dog on a beach",
        "000000000.json": json.dumps({"url": "http://x/0.jpg", "caption": "a dog on a beach", "key": "000000000",
                                      "status": "success"}).encode(),
        "000000002.txt": b"caption without its image",
    })
    pq.write_table(pa.table({"url": ["http://x/0.jpg", "http://x/1.jpg"], "caption": ["a dog on a beach", "a cat"],
                             "key": ["000000000", "000000001"], "status": ["success", "failed_to_download"],
                             "error_message": [None, "404"]}), out / "00000.parquet")
    (out / "00000_stats.json").write_text('{"count": 2, "successes": 1}')
    assert detect_kind(str(out)) == "webdataset"
    batch = _read_all(SourceSpec(str(out)))
    reasons = dict(zip(batch["source_key"].to_pylist(), batch["drop_reason"].to_pylist()))
    assert reasons == {"00000.tar/000000000": None, "00000.tar/000000002": "missing_media",
                       "00000.tar/000000001": "download_failed"}


def test_a_tar_that_breaks_off_keeps_what_was_read(tmp_path):
    members = {}
    for i in range(5):
        members |= {f"{i:03d}.jpg": _jpeg(), f"{i:03d}.txt": b"a red picture"}
    path = _tar(tmp_path / "broken.tar", members)
    data = path.read_bytes()
    path.write_bytes(data[:3000])
    batch, error = read_shard(SourceSpec(str(path)), Shard(0, "webdataset", str(path)), "t")
    assert error is not None and 0 < batch.num_rows < 5


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_tables_of_local_paths(tmp_path, fmt):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(_jpeg())
    rows = {"filepath": ["imgs/a.jpg", "imgs/missing.jpg", str(tmp_path / "imgs" / "a.jpg")],
            "title": ["a red square", "gone", "absolute path"]}
    path = tmp_path / f"list.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.table(rows), path)
    elif fmt == "csv":
        path.write_text("filepath,title\n" + "".join(f"{a},{b}\n" for a, b in zip(*rows.values())))
    else:
        path.write_text("".join(json.dumps({"filepath": a, "title": b}) + "\n" for a, b in zip(*rows.values())))
    batch = _read_all(SourceSpec(str(path), media_col="filepath", text_col="title", shard_size=2))
    assert batch["drop_reason"].to_pylist() == [None, "missing_file", None]
    with pytest.raises(ValueError, match="no media column"):
        _read_all(SourceSpec(str(path)))


def test_tables_of_urls_fetch_with_retries_timeouts_and_a_cap(tmp_path, http_server):
    base, files = http_server["base"], http_server["files"]
    files["a.jpg"] = _jpeg()
    files["b.jpg"] = _jpeg((0, 0, 200))
    urls = [f"{base}/img/a.jpg", f"{base}/status/404", f"{base}/slow", f"{base}/flaky/b.jpg",
            "http://127.0.0.1:9/refused.jpg"] + [f"{base}/img/a.jpg?copy={i}" for i in range(12)]
    pq.write_table(pa.table({"url": urls, "caption": [f"caption number {i}" for i in range(len(urls))]}),
                   tmp_path / "urls.parquet")
    http_server["state"]["max_active"] = 0
    spec = SourceSpec(str(tmp_path / "urls.parquet"), shard_size=100,
                      fetch=FetchConfig(timeout_s=1.0, retries=1, concurrency=4, backoff_s=0.05))
    batch = _read_all(spec)
    reasons = batch["drop_reason"].to_pylist()
    assert reasons[:5] == [None, "fetch_failed", "fetch_failed", None, "fetch_failed"]
    assert batch["drop_detail"].to_pylist()[:5] == [None, "http_404", "timeout", None, "connection"]
    assert all(r is None for r in reasons[5:])
    assert batch.num_rows == len(urls)
    # The cap, measured on requests that all complete (an abandoned slow request keeps its server
    # thread busy after the client has moved on, so it would blur the count).
    import time

    from mmpipe.sources.fetch import fetch_all

    deadline = time.monotonic() + 10
    while http_server["state"]["active"] and time.monotonic() < deadline:  # let abandoned slow requests end
        time.sleep(0.05)
    http_server["state"]["max_active"] = 0
    got = fetch_all([f"{base}/img/a.jpg?n={i}" for i in range(24)], FetchConfig(concurrency=4))
    assert all(content == files["a.jpg"] for content, _ in got)
    assert 2 <= http_server["state"]["max_active"] <= 4


def test_hf_dataset_on_disk_and_its_parquet(tmp_path):
    from datasets import Dataset, DatasetDict, Features, Image as HFImage, Value

    feats = Features({"image": HFImage(), "text": Value("string")})
    ds = Dataset.from_dict({"image": [{"bytes": _jpeg(), "path": None}, {"bytes": _jpeg((0, 200, 0)), "path": None}],
                            "text": ["a red square", "a green square"]}, features=feats)
    DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "hf"))
    assert detect_kind(str(tmp_path / "hf")) == "hf"
    batch = _read_all(SourceSpec(str(tmp_path / "hf")))
    assert batch["text"].to_pylist() == ["a red square", "a green square"] and all(batch["keep"].to_pylist())
    assert _read_all(SourceSpec(str(tmp_path / "hf"), split="test")).num_rows == 1
    ds.to_parquet(str(tmp_path / "hf.parquet"))
    assert _read_all(SourceSpec(str(tmp_path / "hf.parquet"))).num_rows == 2


def test_detect_kind(tmp_path):
    (tmp_path / "folder").mkdir()
    assert detect_kind(str(tmp_path / "folder")) == "folder"
    assert detect_kind("x/shard-{0..9}.tar") == "webdataset"
    (tmp_path / "urls.csv").write_text("url,caption\n")
    assert detect_kind(str(tmp_path / "urls.csv")) == "table"
    with pytest.raises(FileNotFoundError):
        detect_kind(str(tmp_path / "nope.csv"))
    with pytest.raises(FileNotFoundError):
        detect_kind(str(tmp_path / "nothing"))
