"""Training flows on a version the curate flow made in the test: models with lineage, per-step
metrics, evals on the validation split, crash-resume to the same losses, the CLI, and lineage SQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from warehouse import Warehouse

FAST = {"batch_size": 32, "lr": 3e-3, "warmup_steps": 2}


@pytest.fixture(scope="module")
def curated(prefect_harness, tmp_path_factory):
    """Labelled shapes curated into `shapes@v1` (no CLIP: the basic filters and dedup only)."""
    from flows.curate import curate_flow
    from mmpipe.train.synthetic import write_shape_shards

    root = tmp_path_factory.mktemp("train-flow")
    write_shape_shards(root / "src", 320, shard_size=80)
    result = curate_flow(str(root / "src"), "shapes", home=str(root / "home"), clip_model="none", min_side=32)
    assert result["kept"] == 320
    return root / "home"


def test_contrastive_flow_records_model_lineage_steps_and_evals(curated):
    import open_clip

    from flows.train import train_contrastive_flow
    from mmpipe.models.clip import register_configs

    result = train_contrastive_flow("shapes", home=str(curated), model_name="mmpipe-micro-clip", steps=30, **FAST)
    wh = Warehouse(curated)
    model = wh.sql("SELECT m.*, d.name, d.version FROM models m JOIN datasets d USING (dataset_id) "
                   "WHERE model_id = ?", [result["model_id"]]).to_pylist()[0]
    assert (model["name"], model["version"], model["status"], model["objective"]) == ("shapes", "v1", "trained",
                                                                                      "contrastive")
    assert not model["checkpoint_uri"].startswith("/") and json.loads(model["config"])["steps"] == 30
    losses = wh.sql("SELECT value FROM train_steps WHERE model_id = ? AND metric = 'contrastive_loss' ORDER BY step",
                    [result["model_id"]]).column("value").to_pylist()
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5  # the loss falls
    evals = {r["metric"]: r for r in wh.sql("SELECT * FROM evals WHERE model_id = ?",
                                            [result["model_id"]]).to_pylist()}
    assert evals["mean_R@5"]["split"] == "val" and evals["mean_R@5"]["value"] > evals["chance_R@5"]["value"]
    import pyarrow.parquet as pq

    from mmpipe.schema import split_of

    val_uri = wh.sql("SELECT val_ids_uri FROM datasets WHERE name = 'shapes'").column("val_ids_uri")[0].as_py()
    val = pq.read_table(wh.resolve(val_uri))["sample_id"].to_pylist()  # the version's recorded split
    assert val and all(split_of(s) == "val" for s in val) and evals["n_pairs"]["value"] == len(val)
    register_configs()
    open_clip.create_model_and_transforms("mmpipe-micro-clip", pretrained=wh.resolve(model["checkpoint_uri"]))


def test_a_crashed_training_run_resumes_to_the_same_losses(curated, monkeypatch):
    from flows.train import train_contrastive_flow
    from tasks.train import StepRecorder

    opts = dict(model_name="mmpipe-micro-clip", steps=12, seed=3, evaluate=False, batch_size=32, lr=2.9e-3,
                warmup_steps=2)  # checkpoints every 3 steps
    real = StepRecorder.__call__

    def crash(self, step, metrics):
        real(self, step, metrics)
        if step == 8:
            raise RuntimeError("worker lost at step 8")

    monkeypatch.setattr(StepRecorder, "__call__", crash)
    with pytest.raises(Exception, match="step 8"):
        train_contrastive_flow("shapes", home=str(curated), **opts)
    monkeypatch.setattr(StepRecorder, "__call__", real)
    resumed = train_contrastive_flow("shapes", home=str(curated), **opts)  # the same command: the run reopens
    wh = Warehouse(curated)
    assert wh.sql("SELECT status FROM runs WHERE run_id = ?", [resumed["run_id"]]).column("status").to_pylist() == \
        ["completed"]
    # a finished run is not reopened, and reuse=False trains the same recipe again instead of reusing the model
    uninterrupted = train_contrastive_flow("shapes", home=str(curated), reuse=False, **opts)
    assert uninterrupted["run_id"] != resumed["run_id"]

    def losses(model_id):
        return wh.sql("SELECT step, value FROM train_steps WHERE model_id = ? AND metric = 'contrastive_loss' "
                      "ORDER BY step", [model_id]).to_pylist()

    assert len(losses(resumed["model_id"])) == 12
    assert losses(resumed["model_id"]) == losses(uninterrupted["model_id"])  # crash + resume == uninterrupted


def test_a_kill_between_the_step_records_and_their_checkpoint_records_each_step_once(curated, monkeypatch):
    """Steps 7-9 reach train_steps, then the run dies before checkpoint 9 is live: the resumed run starts at
    checkpoint 6, rewrites steps 7-9 from there, and ends with every step's losses once, as uninterrupted."""
    from flows.train import train_contrastive_flow
    from mmpipe.train import loop

    opts = dict(model_name="mmpipe-micro-clip", steps=12, seed=5, evaluate=False, batch_size=32, lr=2.9e-3,
                warmup_steps=2)  # checkpoints every 3 steps
    real = loop._publish

    def die_at_9(tmp, final):
        if final.name == "step-00000009":
            raise RuntimeError("killed before checkpoint 9")
        real(tmp, final)

    monkeypatch.setattr(loop, "_publish", die_at_9)
    with pytest.raises(Exception, match="checkpoint 9"):
        train_contrastive_flow("shapes", home=str(curated), **opts)
    wh = Warehouse(curated)
    model_id = wh.sql("SELECT model_id FROM models WHERE status = 'training' AND json_extract(config, '$.seed') = 5"
                      ).column("model_id")[0].as_py()

    def steps(model_id):
        return wh.sql("SELECT step, value FROM train_steps WHERE model_id = ? AND metric = 'contrastive_loss' "
                      "ORDER BY step", [model_id]).to_pylist()

    assert [r["step"] for r in steps(model_id)] == list(range(1, 10))  # recorded before the checkpoint
    monkeypatch.setattr(loop, "_publish", real)
    resumed = train_contrastive_flow("shapes", home=str(curated), **opts)
    assert resumed["model_id"] == model_id
    straight = train_contrastive_flow("shapes", home=str(curated), reuse=False, **opts)
    assert steps(model_id) == steps(straight["model_id"]) and len(steps(model_id)) == 12


def test_masked_and_diffusion_flows_train_and_evaluate(curated):
    from diffusers import UNet2DConditionModel

    from flows.train import train_contrastive_flow, train_diffusion_flow, train_masked_flow

    masked = train_masked_flow("shapes@v1", home=str(curated), steps=8, **FAST)
    assert {"masked_token_accuracy", "masked_token_unigram_accuracy", "masked_patch_mse"} <= set(
        masked["evals"]["metrics"])
    clip = train_contrastive_flow("shapes", home=str(curated), model_name="mmpipe-micro-clip", steps=4,
                                  evaluate=False, **FAST)
    diffusion = train_diffusion_flow("shapes", home=str(curated), steps=6, batch_size=16, lr=3e-3, warmup_steps=2,
                                     model={"block_out_channels": [16, 32, 32]})
    config = json.loads(Warehouse(curated).sql("SELECT config FROM models WHERE model_id = ?",
                                               [diffusion["model_id"]]).column("config")[0].as_py())
    assert config["clip_model"] == "mmpipe-micro-clip"  # the newest contrastive model on the dataset
    assert not config["clip_pretrained"].startswith("/") and clip["model_id"]
    metrics = diffusion["evals"]["metrics"]
    assert {"conditioning_gap", "denoise_mse", "clip_score", "fd_clip"} <= set(metrics)
    from pathlib import Path

    assert Path(diffusion["evals"]["grid"]).is_file()
    UNet2DConditionModel.from_pretrained(diffusion["checkpoint"])


def test_cli_train_evaluate_models_and_the_lineage_query(curated):
    from mmpipe.cli import app
    from warehouse import examples

    runner = CliRunner()
    home = ["--home", str(curated)]
    out = runner.invoke(app, ["train", "contrastive", "--dataset", "shapes@v1", "--model", "mmpipe-micro-clip",
                              "--steps", "4", "--batch-size", "32", *home])
    assert out.exit_code == 0, out.output
    model_id = out.output.split("contrastive model ")[1].split()[0]
    out = runner.invoke(app, ["evaluate", model_id[:8], *home])
    assert out.exit_code == 0 and "mean_R@5" in out.output, out.output
    out = runner.invoke(app, ["models", "--long", "--format", "json", *home])
    rows = json.loads(out.stdout)
    assert any(r["model_id"] == model_id and r["metric"] == "mean_R@5" for r in rows)
    out = runner.invoke(app, ["models", "--format", "json", *home])  # one row per model, its headline metrics
    mine = [r for r in json.loads(out.stdout) if r["model_id"] == model_id]
    assert len(mine) == 1 and mine[0]["split"] == "val" and "mean_R@5" in mine[0]["metrics"], mine
    # evaluated twice (after training, then `mmpipe evaluate`): each metric of each split counts once
    assert mine[0]["n_metrics"] == len({(r["split"], r["metric"]) for r in rows if r["model_id"] == model_id})
    best = Warehouse(curated).query_readonly(examples.BEST_SETTING).to_pylist()
    assert best and best[0]["dataset"] == "shapes@v1" and best[0]["objective"] == "contrastive"
    out = runner.invoke(app, ["train", "masked", "--dataset", "nope", *home])
    assert out.exit_code == 1 and "no dataset 'nope'" in out.output and "Traceback" not in out.output


def test_the_pipeline_command_curates_then_trains_and_evaluates_each_objective_on_the_new_version(
        prefect_harness, shapes, tmp_path):
    """`mmpipe pipeline`: one source to a new version, the three objectives trained and evaluated on it, the
    diffusion model conditioned on the contrastive model trained in the same run."""
    from mmpipe.cli import app

    out = CliRunner().invoke(app, ["pipeline", shapes.pattern, "--name", "loop", "--clip-model", "none",
                                   "--min-side", "64", "--steps", "4", "--batch-size", "16", "--home", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "trained on loop@v1" in out.output
    rows = Warehouse(tmp_path).query_readonly(
        "SELECT m.objective, m.model_id, m.checkpoint_uri, m.config, m.status, d.name || '@' || d.version AS dataset, "
        "(SELECT count(*) FROM evals e WHERE e.model_id = m.model_id) AS n_evals FROM models m "
        "JOIN datasets d USING (dataset_id) WHERE m.status = 'trained' ORDER BY m.objective").to_pylist()
    assert [r["objective"] for r in rows] == ["contrastive", "diffusion", "masked"]
    assert all(r["dataset"] == "loop@v1" and r["n_evals"] > 0 for r in rows), rows
    contrastive, diffusion = rows[0], rows[1]
    assert contrastive["model_id"][:8] in out.output and diffusion["model_id"][:8] in out.output
    conditioning = json.loads(diffusion["config"])
    wh = Warehouse(tmp_path)  # both stored relative to the home
    assert Path(wh.resolve(conditioning["clip_pretrained"])).resolve() == Path(
        wh.resolve(contrastive["checkpoint_uri"])).resolve()
