"""The ``epcsim`` command.

Bad input exits with status 2 and one line on stderr,
``epcsim: error: <what is wrong>``; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

console = Console()


class UsageError(click.ClickException):
    """Bad input from the user: one line on stderr, exit status 2."""

    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="epcsim")
def app() -> None:
    """epcsim: an executable model of the SGX EPC memory manager."""


@app.command()
@click.option("--metadata", is_flag=True, help="Run without page contents.")
@click.option("--json", "as_json", is_flag=True, help="Print the steps as JSON.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the keys.")
def demo(metadata: bool, as_json: bool, seed: int) -> None:
    """Walk one enclave through its life on the processor model."""
    from epcsim.demo import enclave_life

    steps = enclave_life(content=not metadata, seed=seed)
    if as_json:
        click.echo(json.dumps({"steps": [s.__dict__ for s in steps]}, indent=2))
        return
    table = Table(title="One enclave on the SGX processor model")
    table.add_column("leaf", style="bold")
    table.add_column("result")
    table.add_column("what happened")
    for s in steps:
        style = "green" if s.result in ("SGX_SUCCESS", "ok", "free") else "yellow"
        table.add_row(s.leaf, f"[{style}]{s.result}[/{style}]", s.detail)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage errors become one line and status 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"] or ["--help"]
    try:
        app.main(args, prog_name="epcsim", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.Abort:
        print("epcsim: aborted", file=sys.stderr)
        return 1
    except click.ClickException as e:
        if debug:
            raise
        print(f"epcsim: error: {e.format_message()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
