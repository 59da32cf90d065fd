"""Commands that look back at a run: ``trace`` (every attempt) and ``report`` (one HTML file)."""

from __future__ import annotations

from pathlib import Path

import click

from clusterfarm.cli.base import cli, common, settings
from clusterfarm.errors import EXIT_OK
from clusterfarm.record.trace import FORMATS


def _run_dir(run_dir: str | None) -> Path:
    return Path(run_dir or settings().run.run_dir)


@cli.command()
@click.option("--run-dir", help="Run directory (default: [run] run_dir).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="tsv",
    show_default=True,
    help="tsv and csv have a header line; json is a list of objects.",
)
@common
def trace(run_dir: str | None, fmt: str) -> int:
    """Print one row per attempt of every cell: where, when, outcome, CPU, memory, I/O."""
    from clusterfarm.record.state import connect
    from clusterfarm.record.trace import format_trace, trace_rows

    db = connect(_run_dir(run_dir), create=False)
    try:
        rows = trace_rows(db)
    finally:
        db.close()
    click.echo(format_trace(rows, fmt), nl=False)
    return EXIT_OK


@cli.command()
@click.option("--run-dir", help="Run directory (default: [run] run_dir).")
@click.option("--out", required=True, metavar="FILE.html", help="Where to write the report.")
@common
def report(run_dir: str | None, out: str) -> int:
    """Write a self-contained HTML report of a run: grid, timeline, figures, provenance."""
    from clusterfarm.cli.outputs import output_file
    from clusterfarm.record.state import connect
    from clusterfarm.show.report import write_report

    path = _run_dir(run_dir)
    db = connect(path, create=False)
    try:
        with output_file(out, path) as target:
            size = write_report(db, path, target)
    finally:
        db.close()
    click.echo(f"wrote {out} ({size / 1e6:.2f} MB)")
    return EXIT_OK
