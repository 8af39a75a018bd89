"""Commands that operate mmpipe: a local Prefect server, deployments (deploy, serve), and keeping the
warehouse (warehouse compact, check, migrate, attach)."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from mmpipe.cli.common import HomeOpt, fail, guarded, home_of, warehouse

warehouse_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                            help="Keep the warehouse: compact, check, migrate, attach from your own DuckDB.")


@guarded
def server(port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 4200,
           ui: Annotated[bool, typer.Option(help="Serve Prefect's web UI too.")] = True,
           home: HomeOpt = None) -> None:
    """Run a local Prefect server (database under <home>/prefect) for the UI, deployments and `mmpipe serve`.

    Point commands at it with PREFECT_API_URL=http://127.0.0.1:PORT/api; flow commands then reuse it.
    """
    from mmpipe.cli.prefect_server import run_local_server
    from mmpipe.home import configure_prefect

    configure_prefect(home_of(home))
    typer.echo(f"Prefect server on http://127.0.0.1:{port} (PREFECT_HOME={os.environ['PREFECT_HOME']}); "
               f"export PREFECT_API_URL=http://127.0.0.1:{port}/api")
    code = run_local_server(port, ui)
    if code:
        fail(f"prefect server exited with {code}", code)


def _need_server() -> None:
    if not os.environ.get("PREFECT_API_URL"):
        fail("this needs a Prefect server: start `mmpipe server` and export PREFECT_API_URL=http://127.0.0.1:4200/api")


@guarded
def deploy(gpu_slots: Annotated[int, typer.Option(help="GPU tasks at a time (the `gpu` tag's concurrency "
                                                       "limit).")] = 1,
           image_source: Annotated[Optional[str], typer.Option(help="What the nightly curation reads "
                                                                    "(Prefect variable mmpipe_image_source).")] = None,
           audio_source: Annotated[Optional[str], typer.Option(help="What the hourly transcription reads "
                                                                    "(variable mmpipe_audio_source).")] = None,
           home: HomeOpt = None) -> None:
    """Create the work pool, the `gpu` concurrency limit and every deployment of deployments/prefect.yaml;
    then start a worker: `prefect worker start --pool mmpipe-process` (with MMPIPE_HOME set)."""
    from mmpipe.home import configure_prefect

    _need_server()
    configure_prefect(home_of(home))
    from deployments.serve import deploy_all, setup

    setup(gpu_slots, image_source, audio_source)
    code = deploy_all()
    if code:
        fail(f"prefect deploy exited with {code}", code)
    typer.echo(f"deployed; start a worker: MMPIPE_HOME={home_of(home)} prefect worker start --pool mmpipe-process")


@guarded
def serve(schedule_interval: Annotated[Optional[float], typer.Option(
              help="Run the scheduled deployments every this many seconds instead of their cron/interval.")] = None,
          no_schedules: Annotated[bool, typer.Option("--no-schedules", help="Triggers only.")] = False,
          only: Annotated[Optional[list[str]], typer.Option(help="Serve only these deployments.")] = None,
          param: Annotated[Optional[list[str]], typer.Option(
              help="Override a deployment parameter: DEPLOYMENT.PARAM=VALUE (VALUE is JSON, or else a string), "
                   "e.g. curate-images.min_clip_score=0.28; repeatable.")] = None,
          home: HomeOpt = None) -> None:
    """Serve the deployments of deployments/prefect.yaml in this process (no work pool or worker needed)."""
    from deployments.serve import deployments_spec, parameter_overrides
    from mmpipe.home import configure_prefect

    try:
        overrides = parameter_overrides(param or [])
    except ValueError as e:
        fail(str(e))
    known = [d["name"] for d in deployments_spec()]
    unknown = [n for n in only or [] if n not in known]
    if unknown:
        fail(f"no deployment {', '.join(unknown)} in deployments/prefect.yaml (deployments: {', '.join(known)})")
    _need_server()
    root = home_of(home)
    os.environ["MMPIPE_HOME"] = str(root)
    configure_prefect(root)
    from deployments.serve import serve as run

    run(schedules=not no_schedules, only=only, interval_s=schedule_interval, parameters=overrides)


@warehouse_app.command("compact")
@guarded
def compact(expire_older_than: Annotated[Optional[str], typer.Option(
        help="Also expire snapshots older than this DuckDB interval ('30 days'); time travel before it ends.")] = None,
        home: HomeOpt = None) -> None:
    """Merge small data files (and expire old snapshots on request)."""
    from warehouse.maintenance import compact as run

    got = run(warehouse(home, writable=True), expire_older_than)
    typer.echo(f"live data files {got['live_files_before']} -> {got['live_files_after']}; "
               f"{got['snapshots_expired']} snapshots expired; {got['files_deleted']} unreferenced files deleted")


@warehouse_app.command("check")
@guarded
def check(home: HomeOpt = None) -> None:
    """Do the catalog and the data files agree? Lists missing files and orphans."""
    from warehouse.maintenance import check as run

    got = run(warehouse(home))
    typer.echo(f"{got['files_referenced']} files referenced, {got['files_on_disk']} on disk, "
               f"{got['awaiting_cleanup']} awaiting cleanup")
    for path in got["missing"]:
        typer.echo(f"missing: {path}")
    for path in got["orphans"]:
        typer.echo(f"orphan: {path}")
    if not got["ok"]:
        fail(f"{len(got['missing'])} referenced data file(s) are missing")
    typer.echo("ok" if not got["orphans"] else f"ok; {len(got['orphans'])} orphan file(s) (`mmpipe warehouse "
                                                "compact` removes them once no writer can still commit them)")


@warehouse_app.command("migrate")
@guarded
def migrate(home: HomeOpt = None) -> None:
    """Convert a home made before the DuckLake warehouse (warehouse.duckdb + tables/) in place."""
    from warehouse.maintenance import migrate as run

    counts = run(home_of(home))
    typer.echo("migrated: " + ", ".join(f"{t} {n}" for t, n in counts.items()))


@warehouse_app.command("attach")
@guarded
def attach(home: HomeOpt = None) -> None:
    """Print the SQL that opens this warehouse (read-only) from your own DuckDB 1.5.5 session."""
    from warehouse.catalog import attach_script

    typer.echo(attach_script(warehouse(home).catalog))
