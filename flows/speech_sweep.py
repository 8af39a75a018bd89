"""Choose the transcription-quality threshold by what it does downstream: transcribe a pool once with the
quality filters off, derive a version per threshold from the stored quality, train the same asr student for
the same samples seen on each, score each by WER on one fixed reference set, tag the lowest NAME@best (the
one-standard-error rule preferring the setting that keeps more)."""

from __future__ import annotations

from prefect import flow

from flows.fanout import flows_side_by_side
from flows.runners import nested, run_name
from flows.train import train_asr_flow
from flows.transcribe import transcribe_flow
from mmpipe.home import resolve_home
from mmpipe.speech_sweep import SpeechSweepRequest
from mmpipe.sweep import choose, with_models
from tasks.dataset import derive_dataset
from tasks.report_page import write_report_page
from tasks.runs import tracked_run
from tasks.sweep import (RECIPE_COLUMNS, eval_ids_task, model_recipes_task, publish_sweep, quality_candidates_task,
                         tag_best)
from tasks.train import resolve_dataset_task


@flow(name="speech-sweep", flow_run_name=run_name("speech-sweep"))
def speech_sweep_flow(source: str, name: str, eval_dataset: str, home: str | None = None,
                      min_avg_logprobs: list[float] | None = None, max_no_speech_probs: list[float] | None = None,
                      max_wers: list[float] | None = None, unfiltered: bool = True, whisper_model: str = "tiny.en",
                      samples_seen: int = 3200, batch_size: int = 32, lr: float = 3e-3, seed: int = 0,
                      metric: str = "wer", transcribe: dict | None = None, device: str | None = None) -> dict:
    """eval_dataset: NAME[@VERSION] of a transcribed set with reference texts, kept out of every training
    subset; each threshold value is one setting, plus no filtering unless `unfiltered` is False."""
    home = str(resolve_home(home))
    request = SpeechSweepRequest(source, name, eval_dataset, min_avg_logprobs, max_no_speech_probs, max_wers,
                                 unfiltered, whisper_model, samples_seen, batch_size, lr, seed, metric, transcribe,
                                 device)
    with tracked_run(home, "speech-sweep", request.params()) as run:
        eval_split = resolve_dataset_task(home, eval_dataset)
        eval_name = f"{eval_split['name']}@{eval_split['version']}"
        held_out = eval_ids_task(eval_split["manifest"])  # no training subset may contain an evaluation clip
        pool = nested(transcribe_flow)(source, f"{name}-pool", home=home, **request.pool_options())["dataset"]
        pool = resolve_dataset_task(home, f"{pool['name']}@{pool['version']}")
        candidates = [c for c in quality_candidates_task(pool["manifest"]) if c["sample_id"] not in held_out]
        rows, pending = [], {}  # pending: a training per dataset version (two settings may select the same)
        recipe = request.train_recipe(home, eval_name)
        for setting in request.settings():
            spec = setting.filter_spec(f"{name}-pool@{pool['version']}", eval_name)
            ds = derive_dataset(home, run.run_id, pool, setting.select(candidates), name, spec)
            rows.append(setting.row(ds))
            pending[ds["dataset_id"]] = (f"train-{name}@{ds['version']}", train_asr_flow,
                                         {"dataset": f"{name}@{ds['version']}", **recipe})
        trained = dict(zip(pending, flows_side_by_side(list(pending.values()), f"speech sweep {name}")))
        results = with_models(rows, trained, model_recipes_task(home, [t["model_id"] for t in trained.values()]),
                              RECIPE_COLUMNS)
        best, reason = choose(results, metric, eval_split["n_samples"], lower_is_better=True)
        tag_best(home, name, best["version"], reason, run.run_id)
        plot = publish_sweep(home, run.run_id, name, results, metric, best, reason)
        report = write_report_page(home, f"{name}@{best['version']}")
    return {"run_id": run.run_id, "results": results, "best": best, "reason": reason, "plot": plot, "report": report,
            "eval_dataset": eval_name, "pool": f"{pool['name']}@{pool['version']}"}
