"""Tasks that bootstrap a CLIP filter from trusted data and record it in the warehouse."""

from __future__ import annotations

import json
import uuid

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mmpipe.evaluate.filtering import calibrate_min_score
from mmpipe.stages.clip_score import ClipScoreConfig, ClipScorer
from mmpipe.train.bootstrap import train_filter
from mmpipe.train.data import pairs_from_shards
from warehouse import Warehouse, utcnow


@task(cache_policy=NO_CACHE, tags=["gpu"])
def train_filter_task(seed_shards: list[str], out_dir: str, steps: int, device: str | None = None) -> str:
    """Train the tiny CLIP on trusted pairs; returns its safetensors checkpoint."""
    logger = get_run_logger()
    logger.info("training the filter on %d trusted shard(s) for %d steps", len(seed_shards), steps)
    return str(train_filter(seed_shards, out_dir, steps=steps, device=device,
                            on_step=lambda step, logs: logger.info("step %d %s", step, json.dumps(logs))))


@task(cache_policy=NO_CACHE, tags=["gpu"])
def calibrate_task(holdout_shards: list[str], model_name: str, checkpoint: str, quantile: float) -> float:
    """The min CLIP score that drops only `quantile` of held-out trusted pairs."""
    pairs = pairs_from_shards(holdout_shards)
    scorer = ClipScorer(ClipScoreConfig(model_name, checkpoint, num_workers=0))
    scores = scorer.score([str(i) for i in range(len(pairs))], [p[0] for p in pairs], [p[1] for p in pairs])
    return calibrate_min_score([s[0] for s in scores.values()], quantile)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def register_model_task(home: str, run_id: str, objective: str, checkpoint: str, config: dict) -> str:
    """Record a trained model in the `models` table; returns its id."""
    model_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"mmpipe:model:{checkpoint}:{run_id}"))
    Warehouse(home).register_model({"model_id": model_id, "objective": objective, "dataset_id": None,
                                    "config": json.dumps(config, sort_keys=True), "checkpoint_uri": checkpoint,
                                    "run_id": run_id, "created_at": utcnow()}, run_id)
    return model_id
