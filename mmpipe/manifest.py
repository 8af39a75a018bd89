"""A run's export plan (its kept samples in ordinal order, one Parquet file) and the version manifest
streamed from it: memory stays flat in the number of samples, and each shard reads only its own rows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmpipe.schema import SHARD_SPAN, split_of

PLAN_ROW_GROUP = 16_384  # rows per row group: a shard's read touches about one or two of them


def write_plan(batches: Iterable[pa.RecordBatch], path: str | Path) -> int:
    """Write the plan atomically (row groups carry ordinal min/max, so range reads skip the rest)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    n, writer = 0, None
    try:
        for batch in batches:
            if writer is None:
                writer = pq.ParquetWriter(tmp, batch.schema)
            writer.write_batch(batch, row_group_size=PLAN_ROW_GROUP)
            n += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # nothing kept: an empty plan still marks the step done
        pq.write_table(pa.table({"sample_id": pa.array([], pa.string()), "ordinal": pa.array([], pa.int64())}), tmp)
    os.replace(tmp, path)
    return n


def plan_rows(plan: str | Path, shard_index: int) -> dict[str, dict]:
    """sample_id -> its plan row, for the samples the run met first in shard `shard_index`."""
    lo, hi = shard_index * SHARD_SPAN, (shard_index + 1) * SHARD_SPAN
    table = pq.read_table(plan, filters=[("ordinal", ">=", lo), ("ordinal", "<", hi)])
    return {r["sample_id"]: r for r in table.to_pylist()}


def manifest_from_plan(plan: str | Path, out_dir: str | Path, shard_names: dict[str, str]) -> tuple[Path, Path, int]:
    """manifest.parquet (the plan's rows with their shard and split) and val_ids.parquet, streamed;
    `shard_names` maps a staged part (shard-NNNNNN.tar of the run's shard index) to its final name."""
    out = Path(out_dir)
    manifest, val_ids = out / "manifest.parquet", out / "val_ids.parquet"
    tmp_m, tmp_v = manifest.with_name("manifest.parquet.tmp"), val_ids.with_name("val_ids.parquet.tmp")
    source = pq.ParquetFile(plan)
    n, writer, ids = 0, None, pq.ParquetWriter(tmp_v, pa.schema([("sample_id", pa.string())]))
    try:
        for batch in source.iter_batches(PLAN_ROW_GROUP):
            sids = batch.column("sample_id").to_pylist()
            parts = [f"shard-{o // SHARD_SPAN:06d}.tar" for o in batch.column("ordinal").to_pylist()]
            splits = [split_of(s) for s in sids]
            table = pa.Table.from_batches([batch]).drop_columns(["ordinal"])
            table = table.append_column("shard", pa.array([shard_names.get(p) for p in parts], pa.string()))
            table = table.append_column("split", pa.array(splits, pa.string()))
            if writer is None:
                writer = pq.ParquetWriter(tmp_m, table.schema)
            writer.write_table(table)
            ids.write_table(pa.table({"sample_id": table["sample_id"].filter(pc.equal(table["split"], "val"))}))
            n += table.num_rows
    finally:
        ids.close()
        if writer is not None:
            writer.close()
    if writer is None:
        pq.write_table(pa.table({"sample_id": pa.array([], pa.string())}), tmp_m)
    os.replace(tmp_m, manifest)
    os.replace(tmp_v, val_ids)
    return manifest, val_ids, n
