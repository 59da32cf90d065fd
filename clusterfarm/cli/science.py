"""Commands about the science: ``sample-data``, ``score``, ``plot``, ``export`` and ``tasks``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clusterfarm.cli.base import MEMBER, YEAR, Whole, cli, common, settings
from clusterfarm.cli.outputs import check_out, output_file
from clusterfarm.config.specs import MAX_MEMBER
from clusterfarm.errors import UsageError, writing


@cli.command("sample-data")
@click.option("--out", required=True, metavar="DIR", help="Where to write the data.")
@click.option("--years", default="2000-2002", show_default=True, help="Years to write.")
@click.option(
    "--members",
    default=4,
    show_default=True,
    type=Whole(1, MAX_MEMBER + 1),
    help="Ensemble members per year.",
)
@click.option(
    "--size",
    type=click.Choice(["small", "full"]),
    default="small",
    show_default=True,
    help="small: a few dozen steps (tests, demo); full: 1460 steps like a real year.",
)
@click.option(
    "--seed",
    type=Whole(0, 2**32 - 1),
    default=0,
    show_default=True,
    help="Seed of the random parts.",
)
@click.option("--packed", is_flag=True, help="Write int16 with scale_factor/add_offset and zlib.")
@click.option(
    "--difficulty",
    type=click.Choice(["easy", "hard"]),
    default="easy",
    show_default=True,
    help="easy: a fixed scenario, weak noise; hard: random storms, close pairs, storms "
    "fading for a step, 1.5 m/s correlated noise.",
)
@common
def sample_data(
    out: str, years: str, members: int, size: str, seed: int, packed: bool, difficulty: str
) -> None:
    """Write synthetic 20CR-like u850/v850 files with known vortex tracks (and the truth)."""
    from clusterfarm.analysis import write_sample_data
    from clusterfarm.config.specs import parse_spec

    year_list = parse_spec(years, "year")
    with writing(f"--out {out}", "give a folder you can write to"):
        written = write_sample_data(
            out,
            year_list,
            members,
            size,  # type: ignore[arg-type]
            seed,
            packed,
            difficulty,  # type: ignore[arg-type]
        )
    click.echo(
        f"wrote {len(written)} files for {len(year_list)} year(s) x {members} members "
        f"({size}, {difficulty}{', packed' if packed else ''}) to {out}; "
        f"truth tracks in {out}/truth"
    )


@cli.command()
@click.option("--run-dir", help="Run directory whose vort_track results to score.")
@click.option("--truth", required=True, metavar="DIR", help="Sample data folder (or its truth/).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@common
def score(run_dir: str | None, truth: str, as_json: bool) -> None:
    """Score vort_track results against the true tracks of sample data."""
    from clusterfarm.analysis import score_results

    figures = score_results(_run_paths(run_dir)[1], truth)
    if as_json:
        click.echo(json.dumps(figures))
        return
    error, intensity = figures["error_km"], figures["intensity_error"]
    lines = [
        f"recall {figures['recall']:.3f}  precision {figures['precision']:.3f}  "
        f"f1 {figures['f1']:.3f}  ({figures['found_tracks']} found, "
        f"{figures['truth_tracks']} true tracks)"
    ]
    if error["mean"] is not None:
        lines += [
            f"position error: mean {error['mean']:.1f} km, median {error['median']:.1f} km, "
            f"95th percentile {error['p95']:.1f} km",
            f"intensity error: mean |error| {intensity['mean_abs']:.2e} s-1 "
            f"({100 * intensity['relative']:.0f}% of the true value), "
            f"bias {intensity['bias']:+.2e} s-1",
        ]
    click.echo("\n".join(lines))


@cli.command()
@click.option("--run-dir", help="Run directory whose vort_track results to draw.")
@click.option("--year", type=YEAR, required=True, help="Year to draw.")
@click.option("--member", type=MEMBER, help="One member (default: all members of the year).")
@click.option("--out", required=True, metavar="FILE.png", help="PNG file to write.")
@click.option(
    "--density",
    is_flag=True,
    help="Draw the year's ensemble-mean track density (from year_summary) instead.",
)
@common
def plot(run_dir: str | None, year: int, member: int | None, out: str, density: bool) -> None:
    """Draw the tracks of a year on a lat/lon map (PNG), or their density."""
    if Path(out).suffix.lower() != ".png":
        raise UsageError(f"--out {out}: plot writes PNG images; give a file name ending in .png")
    run_path, results_dir = _run_paths(run_dir)
    with output_file(out, run_path) as target:
        _plot(results_dir, year, member, str(target), density)
    click.echo(f"wrote {out}")


def _plot(results_dir: str, year: int, member: int | None, out: str, density: bool) -> None:
    from clusterfarm.analysis import find_results, plot_density, plot_tracks

    if density:
        from clusterfarm.tasks.registry import get_task, load_task_modules

        load_task_modules()
        summary = get_task("year_summary").output_path(Path(results_dir), year, -1)
        if not summary.is_file():
            raise UsageError(
                f"{summary}: no year_summary for {year}; run --task vort_track,year_summary first"
            )
        plot_density(summary, out, f"track density {year}")
        return
    files = find_results(results_dir, year, member)
    if not files:
        which = f"year {year}" + (f" member {member}" if member is not None else "")
        raise UsageError(f"{results_dir}: no vort_track results for {which}; run it first")
    title = f"vort_track {year}" + (
        f" member {member}" if member is not None else f", {len(files)} members"
    )
    plot_tracks(files.values(), out, title)


def _run_paths(run_dir: str | None) -> tuple[Path, str]:
    """The run dir (``--run-dir``, else the settings') and its results folder."""
    config = settings()
    if run_dir is not None:
        config = config.with_run(run_dir=run_dir)
    return Path(config.run.run_dir), config.run.results_path


@cli.command()
@click.option("--run-dir", help="Run directory whose vort_track results to export.")
@click.option("--years", help="Years to export, e.g. 2000-2002 (default: all found).")
@click.option("--members", help="Members to export, e.g. 0-3 (default: all found).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["te-csv", "gfdl", "track", "imilast", "csv"]),
    required=True,
    help="te-csv/gfdl: TempestExtremes CSV/text; track: TRACK tr_trs; imilast; csv: plain.",
)
@click.option("--out", required=True, metavar="PATH", help="File to write.")
@common
def export(run_dir: str | None, years: str | None, members: str | None, fmt: str, out: str) -> None:
    """Write vort_track tracks in a community exchange format (one file)."""
    from clusterfarm.analysis import find_results
    from clusterfarm.analysis.export import export_tracks
    from clusterfarm.config.specs import parse_spec

    run_path, results_dir = _run_paths(run_dir)
    check_out(out, run_path)  # before any result is read
    wanted_years = set(parse_spec(years, "year")) if years else None
    wanted_members = set(parse_spec(members, "member")) if members else None
    files = {
        key: path
        for key, path in find_results(results_dir).items()
        if (wanted_years is None or key[0] in wanted_years)
        and (wanted_members is None or key[1] in wanted_members)
    }
    if not files:
        raise UsageError(
            f"{results_dir}: no vort_track results for those years and members; run it first"
        )
    with output_file(out, run_path) as target:
        count = export_tracks(files, fmt, target)
    click.echo(f"wrote {count} tracks of {len(files)} member-year(s) to {out} ({fmt})")


@cli.command("tasks")
@click.argument("name", required=False)
@common
def tasks_command(name: str | None) -> None:
    """List the tasks, or one task's parameters with their defaults and meanings.

    A task module documents its parameters in a ``PARAM_HELP`` dict (name -> meaning); they
    are set in the settings as ``[tasks.NAME]``.
    """
    import sys
    import textwrap

    from clusterfarm.tasks.registry import get_task, load_task_modules, task_names

    load_task_modules(settings().tasks.modules)
    for task_name in [name] if name else task_names():
        spec = get_task(task_name)
        meanings = getattr(sys.modules.get(spec.fn.__module__), "PARAM_HELP", {})
        click.echo(f"{task_name} (version {spec.version})")
        if not spec.defaults:
            click.echo("  (no parameters)")
        for key, default in spec.defaults.items():
            click.echo(f"  {key} = {json.dumps(default)}")
            if key in meanings:
                click.echo(textwrap.fill(meanings[key], 96, initial_indent=" " * 6,
                                         subsequent_indent=" " * 6))  # fmt: skip
