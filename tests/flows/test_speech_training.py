"""Speech data that trains speech models, on the shipped speech set (300 espeak-ng clips, 10% bad): `mmpipe
pipeline` transcribes it and trains and evaluates the three speech objectives on the new version (the report
shows them, with the asr student's worst transcripts), and the speech sweep trains one asr student per
transcript-quality threshold at equal samples seen and tags the lowest-WER one NAME@best."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from warehouse import Warehouse


@pytest.fixture(scope="module")
def speech(prefect_harness, tmp_path_factory) -> dict:
    from mmpipe.demo.speech import split_speech_set

    root = tmp_path_factory.mktemp("speech")
    pool, holdout, truth = split_speech_set(root / "set")
    return {"home": str(root / "home"), "pool": str(pool), "holdout": str(holdout), "truth": truth}


def test_the_pipeline_transcribes_then_trains_and_evaluates_each_speech_objective(speech):
    from mmpipe.cli import app

    home = speech["home"]
    out = CliRunner().invoke(app, ["pipeline", speech["pool"], "--name", "speech", "--objectives",
                                   "asr,speech-masked,audio-contrastive", "--steps", "4", "--batch-size", "8",
                                   "--whisper-model", "tiny.en", "--home", home])
    assert out.exit_code == 0, out.output
    wh = Warehouse(home)
    models = {r["objective"]: r for r in wh.sql(
        "SELECT m.model_id, m.objective, m.status, d.name, d.version, d.modality FROM models m "
        "JOIN datasets d USING (dataset_id)").to_pylist()}
    assert set(models) == {"asr", "speech-masked", "audio-contrastive"}
    assert all((m["status"], m["name"], m["version"], m["modality"]) == ("trained", "speech", "v1", "audio")
               for m in models.values())
    evals = {(r["objective"], r["metric"]): r for r in wh.sql(
        "SELECT m.objective, e.metric, e.value, e.split FROM evals e JOIN models m USING (model_id)").to_pylist()}
    assert {("asr", "wer"), ("asr", "cer"), ("asr", "n_references"), ("speech-masked", "contrastive_loss"),
            ("speech-masked", "contrastive_loss_chance"), ("audio-contrastive", "audio_to_text_R@1"),
            ("audio-contrastive", "text_to_audio_R@5")} <= set(evals)
    assert all(e["split"] == "val" for e in evals.values())
    assert evals[("asr", "n_references")]["value"] >= 10  # the validation split's clips with a reference
    steps = wh.sql("SELECT m.objective, max(t.step) AS last FROM train_steps t JOIN models m USING (model_id) "
                   "GROUP BY ALL").to_pylist()
    assert {r["objective"]: r["last"] for r in steps} == {o: 4 for o in models}
    for objective, m in models.items():  # each model's metrics printed
        assert f"{objective:<12} {m['model_id'][:8]}  speech@v1 [val]" in out.output, out.output[-2000:]
    page = (Path(home) / "reports" / "speech" / "v1" / "index.html").read_text()
    assert "Worst transcripts of asr" in page and all(f"{o} {m['model_id'][:8]}" in page for o, m in models.items())
    with pytest.raises(ValueError, match="not both"):
        from mmpipe.train.objectives import pipeline_modality

        pipeline_modality(("asr", "contrastive"))


def test_a_speech_sweep_trains_a_student_per_threshold_and_tags_the_lowest_wer(speech):
    import pyarrow.parquet as pq

    from flows.speech_sweep import speech_sweep_flow
    from flows.transcribe import transcribe_flow
    from warehouse.dataset_queries import resolve_dataset

    home, truth = speech["home"], speech["truth"]
    transcribe_flow(speech["holdout"], "speech-holdout", home=home, whisper_model="tiny.en")
    result = speech_sweep_flow(speech["pool"], "swept", "speech-holdout", home=home, min_avg_logprobs=[-1.0],
                               max_wers=[1.0], samples_seen=160, batch_size=16)
    rows = {r["setting"]: r for r in result["results"]}
    assert set(rows) == {"min_avg_logprob=-1", "max_wer=1", "keep_fraction=1"}
    assert {r["samples_seen"] for r in rows.values()} == {160}
    assert len({r["model_id"] for r in rows.values()}) == 3  # a student per setting
    assert all("wer" in r["metrics"] and "cer" in r["metrics"] for r in rows.values())
    wh = Warehouse(home)
    keys = {}
    for setting, r in rows.items():
        manifest = pq.read_table(wh.resolve(resolve_dataset(wh, f"swept@{r['version']}")["manifest_uri"]))
        keys[setting] = set(manifest.column("source_key").to_pylist())
    holdout = {p.name for p in Path(speech["holdout"]).glob("*.ogg")}
    assert not any(keys[s] & holdout for s in keys)  # no student saw an evaluation clip
    everything = keys["keep_fraction=1"]
    assert all(keys[s] < everything for s in keys if s != "keep_fraction=1")
    # a threshold drops bad audio more often than good: its dropped clips hold a larger share of bad ones than the
    # pool (tiny.en's pseudo-labels of these short synthetic clips are rough, so good clips fall below it too)
    bad = {k for k, t in truth.items() if t["kind"] != "good"} & everything
    for setting in ("min_avg_logprob=-1", "max_wer=1"):
        dropped = everything - keys[setting]
        assert len(dropped & bad) / len(dropped) > 1.5 * len(bad) / len(everything), (setting, len(dropped & bad))
    for kind in ("mismatched", "foreign_gibberish"):  # a reference of another sentence, or no English at all
        clips = {k for k, t in truth.items() if t["kind"] == kind} & everything
        assert len(clips - keys["max_wer=1"]) >= 3, kind
    # the lowest WER wins, unless a setting keeping more is within one standard error
    top = min(r["metrics"]["wer"] for r in rows.values())
    n_eval = resolve_dataset(wh, "speech-holdout")["n_samples"]
    se = (top * (1 - top) / n_eval) ** 0.5 if 0 <= top <= 1 else 0.0
    close = [r for r in rows.values() if r["metrics"]["wer"] <= top + se]
    assert result["best"]["n_samples"] == max(r["n_samples"] for r in close)
    assert resolve_dataset(wh, "swept@best")["version"] == result["best"]["version"]
    assert Path(result["plot"]).stat().st_size > 5000
    spec = json.loads(resolve_dataset(wh, "swept@best")["filter_spec"])
    assert spec["parent"] == result["pool"] and spec["excluded"] == result["eval_dataset"]
