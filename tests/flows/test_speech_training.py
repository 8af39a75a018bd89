"""Speech data that trains speech models, on part of the shipped speech set: `mmpipe pipeline` transcribes it and
trains and evaluates the three speech objectives on the new version (the report shows them, with the asr
student's worst transcripts). The speech sweep runs in the demo test (`mmpipe demo --quick --speech`), which
checks what each threshold selects, that no evaluation clip is trained on, and the one-standard-error choice."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from warehouse import Warehouse


@pytest.fixture(scope="module")
def speech(prefect_harness, tmp_path_factory) -> dict:
    from mmpipe.demo.speech import split_speech_set

    root = tmp_path_factory.mktemp("speech")
    pool, holdout, truth = split_speech_set(root / "set")
    for name in sorted(truth)[120:]:  # 120 clips (about 100 in the pool) make a version with a validation split
        for path in (pool / name, (pool / name).with_suffix(".txt")):
            path.unlink(missing_ok=True)
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
    assert evals[("asr", "n_references")]["value"] >= 3  # the validation split's clips with a reference
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
