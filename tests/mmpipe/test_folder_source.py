"""The folder source: captions from sidecars and manifests; nothing seen goes unaccounted."""

from __future__ import annotations

import pytest

from mmpipe.sources.folder import ManifestError, read_entries, scan_folder


def _tree(root, files: dict[str, bytes | str]):
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return root


def test_sidecar_jsonl_and_csv_captions(tmp_path):
    _tree(tmp_path, {
        "a.jpg": b"A", "a.txt": "  caption a \n",
        "b.png": b"B", "captions.jsonl": '{"file": "b.png", "caption": "caption b"}\n\n',
        "sub/c.gif": b"C", "sub/captions.csv": "image,text\nc.gif,caption c\n",
        ".hidden.jpg": b"H",
    })
    entries = {e.source_key: e for e in scan_folder(tmp_path)}
    assert set(entries) == {"a.jpg", "b.png", "sub/c.gif"}
    assert [entries[k].text for k in ("a.jpg", "b.png", "sub/c.gif")] == ["caption a", "caption b", "caption c"]
    assert all(e.problem is None for e in entries.values())


def test_missing_caption_missing_file_and_bad_encoding_are_entries(tmp_path):
    _tree(tmp_path, {
        "orphan.jpg": b"O",
        "latin.jpg": b"L", "latin.txt": "caf\xe9".encode("latin-1"),
        "captions.jsonl": '{"file": "gone.jpg", "caption": "never arrived"}\n',
    })
    problems = {e.source_key: e.problem for e in scan_folder(tmp_path)}
    assert problems == {"orphan.jpg": "missing_caption", "latin.jpg": "caption_encoding", "gone.jpg": "missing_file"}
    batch = read_entries(scan_folder(tmp_path), "t")
    assert batch.num_rows == 3 and not any(batch["keep"].to_pylist())
    assert len(set(batch["sample_id"].to_pylist())) == 3


def test_a_broken_manifest_names_file_and_line(tmp_path):
    _tree(tmp_path, {"captions.jsonl": '{"file": "a.jpg", "caption": "ok"}\n{not json\n'})
    with pytest.raises(ManifestError, match=r"captions.jsonl:2"):
        scan_folder(tmp_path)
    _tree(tmp_path, {"captions.jsonl": '{"caption": "no file"}\n'})
    with pytest.raises(ManifestError, match="no file column"):
        scan_folder(tmp_path)


def test_not_a_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        scan_folder(tmp_path / "nope")


def test_sample_ids_hash_bytes_and_text(tmp_path):
    _tree(tmp_path, {"a.jpg": b"same", "a.txt": "one", "b.jpg": b"same", "b.txt": "two", "c.jpg": b"same",
                     "c.txt": "one"})
    batch = read_entries(scan_folder(tmp_path), "t")
    ids = batch["sample_id"].to_pylist()
    assert ids[0] != ids[1] and ids[0] == ids[2]
    assert len(set(batch["content_sha256"].to_pylist())) == 1


def test_oversized_files_are_dropped_without_reading(tmp_path):
    _tree(tmp_path, {"big.jpg": b"x" * 5000, "big.txt": "big"})
    batch = read_entries(scan_folder(tmp_path), "t", max_file_bytes=1000)
    assert batch["drop_reason"].to_pylist() == ["file_too_large"]
