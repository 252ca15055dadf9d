"""The ``restguard`` command."""

from __future__ import annotations

import click

from restguard import __version__
from restguard.cli.apikey import apikey
from restguard.cli.audit import audit
from restguard.cli.check import check
from restguard.cli.init import init
from restguard.cli.quickstart import quickstart
from restguard.cli.server import migrate, serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="restguard")
def cli() -> None:
    """restguard: secure any REST API behind a default-deny gateway with API keys.

    Start with 'restguard quickstart', or 'restguard init --dir DIR' then 'restguard serve'.
    """


for command in (quickstart, init, serve, migrate, apikey, audit):
    cli.add_command(command)
cli.add_command(check)


def main() -> None:
    cli(prog_name="restguard")
