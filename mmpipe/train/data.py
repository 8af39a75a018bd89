"""Training data: WebDataset shards streamed as decoded, preprocessed samples.

The stream is a pure function of (shards, seed, split, number of workers). Each DataLoader worker
reads its own shards in an order fixed by (seed, epoch), shuffles the raw samples through
webdataset's shuffle buffer seeded by (seed, epoch, worker), and only then decodes. Every sample
says which worker made it and at which raw position, so a checkpoint can record how far each worker had read (`ShardStream.advance`) and a
resumed run restarts at exactly the next batch by skipping raw samples without decoding them.
Nothing holds the dataset: memory is one shuffle buffer of encoded samples per worker.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch.utils.data import IterableDataset, get_worker_info

from mmpipe.schema import _unit_hash, split_of  # noqa: F401  (split_of: the one split rule, re-exported)
from mmpipe.sources.tars import expand_shards, members, tar_samples  # noqa: F401  (expand_shards: re-exported)
from mmpipe.stages.decode import DecodeError, decode_image

log = logging.getLogger(__name__)

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def _shard_samples(path: str, strict: bool = False) -> Iterator[dict]:
    """The samples of one shard through the one tar reader: {'__key__', ext: bytes, ...} (members
    over its size cap, links and devices left out).

    A broken or truncated tar ends its shard with a warning (strict=False) or a ValueError; the
    samples read before the damage are kept.
    """
    samples = tar_samples(path)
    last = None
    for s in samples:
        last = s["__key__"]
        yield {"__key__": last, **{e: v for e, v in members(s).items() if isinstance(v, bytes)}}
    if samples.error:
        if strict:
            raise ValueError(f"shard {path} is broken: {samples.error}")
        log.warning("shard %s is broken after %s: %s", path, last, samples.error)


def sample_meta(raw: dict) -> dict:
    """The sample's json member (empty when absent or unreadable)."""
    if "__meta__" not in raw:
        try:
            meta = json.loads(raw["json"]) if "json" in raw else {}
        except (ValueError, UnicodeDecodeError):
            meta = {}
        raw["__meta__"] = meta if isinstance(meta, dict) else {}
    return raw["__meta__"]


def sample_key(raw: dict) -> str:
    """The sample id (from the json, as our exports write it), else the tar key."""
    return str(sample_meta(raw).get("sample_id") or raw["__key__"].rsplit("/", 1)[-1])


def image_and_caption(raw: dict) -> tuple[bytes, str] | None:
    """The encoded image and the caption of a raw sample, or None when either is missing."""
    image = next((raw[e] for e in IMAGE_EXTS if raw.get(e)), None)
    text = raw.get("txt", b"").decode("utf-8", "replace").strip()
    return (image, text) if image and text else None


def iter_pairs(shards: str | Sequence[str], split: str | None = None, val_fraction: float = 0.1,
               strict: bool = False) -> Iterator[tuple[bytes, str]]:
    """(encoded image, caption) of each complete sample, streamed in shard order."""
    for path in expand_shards(shards):
        for raw in _shard_samples(path, strict):
            pair = image_and_caption(raw)
            if pair and (split is None or split_of(sample_key(raw), val_fraction) == split):
                yield pair


def pairs_from_shards(paths: str | Sequence[str]) -> list[tuple[bytes, str]]:
    """All (image bytes, caption) pairs of small shards (a trusted seed or holdout set); a broken shard is an error."""
    return list(iter_pairs(paths, strict=True))


def shuffled(samples: Iterator, size: int, rng: random.Random) -> Iterator:
    """webdataset's shuffle buffer of `size` items, drawing from `rng`; size <= 1 keeps the order."""
    from webdataset.filters import shuffle

    return samples if size <= 1 else shuffle(size, size, rng=rng)(iter(samples))


class ShardStream(IterableDataset):
    """Decoded, preprocessed samples of WebDataset shards for one split, streamed.

    Each sample is a dict: image (tensor), text (token ids), caption, sample_id, label (from
    key.json, '' when absent) and the stream position (worker, workers, position). With
    repeat=True the stream cycles through epochs forever (the loop decides when to stop); each
    worker's epoch e reads its share of the shards in the order shuffle(seed, e). Shards are split
    across DataLoader workers, or samples when there are fewer shards than workers.
    """

    def __init__(self, shards: str | Sequence[str], preprocess: Callable, tokenizer: Callable,
                 split: str | None = "train", val_fraction: float = 0.1, seed: int = 0,
                 shuffle_buffer: int = 1000, repeat: bool = True):
        super().__init__()
        self.shards = expand_shards(shards)
        missing = [p for p in self.shards if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} training shard(s) not found, e.g. {missing[0]}")
        self.preprocess, self.tokenizer = preprocess, tokenizer
        self.split, self.val_fraction, self.seed = split, val_fraction, seed
        self.shuffle_buffer, self.repeat = shuffle_buffer, repeat
        self._state: dict | None = None
        self._rng = torch.Generator()  # seeds augmentations per sample (torch.manual_seed is slower)

    # -- resume ---------------------------------------------------------------------------------
    def resume(self, state: dict | None) -> None:
        """Continue after the batches that `state` (from advance) says were consumed."""
        if state:
            # keys come back as strings when a state went through JSON
            state = {**state, "positions": {int(k): int(v) for k, v in state.get("positions", {}).items()}}
        self._state = state

    @staticmethod
    def advance(state: dict | None, batch: dict) -> dict:
        """The stream state after the loop consumed `batch` (plain ints, saved with the checkpoint)."""
        state = {"batches": 0, "workers": 1, "positions": {}, **(state or {})}
        positions = dict(state["positions"])
        for w, p in zip(batch["worker"].tolist(), batch["position"].tolist()):
            positions[w] = max(positions.get(w, 0), p + 1)
        return {"batches": state["batches"] + 1, "workers": int(batch["workers"][0]), "positions": positions}

    # -- the stream -----------------------------------------------------------------------------
    def _raw(self, worker: int, workers: int) -> Iterator[tuple[int, dict]]:
        """(epoch, raw sample) in this worker's order, undecoded."""
        for epoch in itertools.count():
            order = list(self.shards)
            if self.shuffle_buffer > 1:
                random.Random(f"{self.seed}:{epoch}").shuffle(order)
            by_shard = len(order) >= workers
            mine = order[worker::workers] if by_shard else order
            raw = (r for path in mine for r in _shard_samples(path))
            if self.split is not None:
                raw = (r for r in raw if split_of(sample_key(r), self.val_fraction) == self.split)
            if not by_shard:
                raw = (r for i, r in enumerate(raw) if i % workers == worker)
            n = 0
            for r in shuffled(raw, self.shuffle_buffer, random.Random(f"{self.seed}:{epoch}:{worker}")):
                n += 1
                yield epoch, r
            if not self.repeat:
                return
            if n == 0:
                raise RuntimeError(f"data worker {worker} of {workers} found no {self.split or ''} samples in "
                                   f"{len(mine)} shard(s); use fewer workers or more shards")

    def _decode(self, raw: dict, epoch: int) -> dict | None:
        pair = image_and_caption(raw)
        if pair is None:
            log.warning("skipping %s: no image or no caption", raw["__key__"])
            return None
        try:
            img, _ = decode_image(pair[0])
        except DecodeError as e:
            log.warning("skipping %s: %s (%s)", raw["__key__"], e.reason, e)
            return None
        key = sample_key(raw)
        # Augmentations draw from a seed of (seed, epoch, sample), not from a running RNG, so a
        # resumed stream that skipped samples undecoded augments the next ones identically. The
        # global RNG is put back after, as in the main process it belongs to the objective.
        outer = torch.get_rng_state()
        torch.set_rng_state(self._rng.manual_seed(int(_unit_hash(f"{self.seed}:{epoch}:{key}") * 2**63)).get_state())
        try:
            image = self.preprocess(img)
        finally:
            torch.set_rng_state(outer)
        return {"image": image, "text": self.tokenizer([pair[1]])[0], "caption": pair[1], "sample_id": key,
                "label": str(sample_meta(raw).get("label") or "")}

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        physical, workers = (info.id, info.num_workers) if info else (0, 1)
        state = self._state or {"batches": 0, "workers": workers, "positions": {}}
        if state["workers"] == workers:
            # The DataLoader takes batches from workers in turn, starting at worker 0; after n
            # batches the next one was due from worker n % workers, so that one plays worker 0 now.
            worker = (physical + state["batches"]) % workers
            skip = state["positions"].get(worker, 0)
        else:
            warnings.warn(f"resuming with {workers} data workers where the checkpoint had {state['workers']}: "
                          "the data order is only approximately restored", stacklevel=1)
            worker, skip = physical, sum(state["positions"].values()) // workers
        epoch_now, usable = 0, 0
        for position, (epoch, raw) in enumerate(self._raw(worker, workers)):
            if epoch != epoch_now:
                if not usable:  # a whole epoch of undecodable samples would loop forever
                    raise RuntimeError(f"data worker {worker} of {workers}: no usable sample in a whole epoch")
                epoch_now, usable = epoch, 0
            if position < skip:
                usable += 1
                continue
            sample = self._decode(raw, epoch)
            if sample is not None:
                usable += 1
                yield {**sample, "worker": worker, "workers": workers, "position": position}
