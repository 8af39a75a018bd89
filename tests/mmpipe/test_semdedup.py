"""Semantic dedup, faiss indexes, export resize modes, id files and recipes as plain functions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmpipe.semdedup import SemDedupConfig, brute_force_duplicates, semantic_duplicates


def _planted(n=300, copies=30, d=32, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, d)).astype(np.float32)
    src = rng.choice(n, copies, replace=False)
    noisy = base[src] + 0.02 * rng.normal(size=(copies, d)).astype(np.float32)
    scores = np.r_[rng.uniform(0.3, 0.4, n), rng.uniform(0.1, 0.2, copies)]
    return np.r_[base, noisy], scores, src


def test_semantic_duplicates_drop_the_planted_copies_and_keep_the_higher_score():
    emb, scores, src = _planted()
    twin, sim, labels = semantic_duplicates(emb, scores, SemDedupConfig(threshold=0.95, clusters=10))
    dropped = np.flatnonzero(twin >= 0)
    assert sorted(dropped.tolist()) == list(range(300, 330))
    assert twin[300:].tolist() == src.tolist() and (sim[300:] > 0.95).all()
    assert len(set(labels.tolist())) == 10
    # the copy with the higher score is the one kept
    scores2 = scores.copy()
    scores2[300] = 1.0
    twin2, _, _ = semantic_duplicates(emb, scores2, SemDedupConfig(threshold=0.95, clusters=10))
    assert twin2[300] == -1 and twin2[src[0]] == 300


def test_clustered_dedup_agrees_with_brute_force_on_planted_copies():
    emb, scores, _ = _planted(seed=1)
    twin, _, _ = semantic_duplicates(emb, scores, SemDedupConfig(threshold=0.9, clusters=8))
    assert ((twin >= 0) == (brute_force_duplicates(emb, scores, 0.9) >= 0)).all()
    one, _, _ = semantic_duplicates(emb, scores, SemDedupConfig(threshold=0.9, clusters=1, block=7))
    assert (one == brute_force_duplicates(emb, scores, 0.9)).all()  # blockwise = all at once
    empty, _, _ = semantic_duplicates(np.zeros((0, 4)), None)
    assert len(empty) == 0


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_every_index_kind_finds_an_exact_copy_first(kind):
    from mmpipe.search import build_index, index_kind, search

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(2000, 32)).astype(np.float32)
    index = build_index(emb, kind)
    scores, ids = search(index, emb[[5, 700, 1999]], 3)
    assert index_kind(index) == kind and ids[:, 0].tolist() == [5, 700, 1999]


def test_index_kind_is_chosen_by_size():
    from mmpipe.search import choose_kind

    assert [choose_kind(n) for n in (10, 50_000, 100_000, 5_000_000)] == ["flat", "flat", "hnsw", "ivfpq"]
    with pytest.raises(ValueError):
        choose_kind(10, "annoy")


def test_embeddings_in_clip_retrieval_layout(tmp_path):
    from mmpipe.search import read_embeddings, write_embeddings

    emb = np.random.default_rng(0).normal(size=(25, 8)).astype(np.float32)
    files = write_embeddings(tmp_path, emb, emb, pa.table({"sample_id": [str(i) for i in range(25)]}), shard_size=10)
    assert [p.split("/")[-1] for p in files["img_emb"]] == ["img_emb_0.npy", "img_emb_1.npy", "img_emb_2.npy"]
    assert pq.read_table(files["metadata"][2]).num_rows == 5
    assert np.allclose(read_embeddings(tmp_path), emb, atol=1e-2)


@pytest.mark.parametrize("mode,size", [("center_crop", (64, 64)), ("keep_ratio", (128, 64)), ("border", (64, 64))])
def test_resize_modes_are_img2datasets(mode, size):
    from mmpipe.export_options import resize_image

    img = Image.new("RGB", (200, 100), (255, 0, 0))
    out = resize_image(img, 64, mode)
    assert out.size == size
    if mode == "border":
        assert out.getpixel((32, 2)) == (0, 0, 0) and out.getpixel((32, 32))[0] > 200  # padded, picture centred


def test_id_files_datacomp_uids_and_parquet(tmp_path):
    from mmpipe.export_options import match_ids, read_id_file

    ids = ["ab" * 32, "cd" * 32, "ef" * 32]
    uids = np.array([(int(s[:16], 16), int(s[16:32], 16)) for s in ids[:2]], dtype="u8,u8")
    np.save(tmp_path / "u.npy", uids)
    assert match_ids(read_id_file(tmp_path / "u.npy"), ids) == (ids[:2], [])
    pq.write_table(pa.table({"uid": [ids[2][:32], "0" * 32]}), tmp_path / "u.parquet")
    assert match_ids(read_id_file(tmp_path / "u.parquet"), ids) == ([ids[2]], ["0" * 32])
    with pytest.raises(ValueError):
        read_id_file(tmp_path / "x.csv")


def test_recipes_parse_merge_and_round_trip():
    import yaml

    from mmpipe.recipe import DEMO_RECIPE, RecipeError, load_recipe, merge, parse_recipe, recipe_from_params

    values, semantic = load_recipe(DEMO_RECIPE)
    assert values["name"] == "demo-shapes" and values["min_side"] == 64 and semantic["clusters"] == 24
    given = {"name": "x", "min_side": 200, "dedup_hamming": 4}
    assert merge(values, given, explicit={"name"}) == {"name": "x", "min_side": 64, "dedup_hamming": 4}
    with pytest.raises(RecipeError, match="basic.min_sid"):
        parse_recipe({"basic": {"min_sid": 3}})
    params = {"source": "s.tar", "name": "n", "min_side": 32, "dedup_hamming": None, "allowed_roots": ["/r"]}
    back, _ = parse_recipe(yaml.safe_load(recipe_from_params(params)))
    assert back["source"] == "s.tar" and back["dedup_hamming"] == -1 and back["allow_root"] == ["/r"]
