"""The ``restguard`` command."""

from __future__ import annotations

import click

from restguard import __version__
from restguard.cli.apikey import apikey
from restguard.cli.app import app
from restguard.cli.audit import audit
from restguard.cli.check import check
from restguard.cli.context import CONFIG_HELP
from restguard.cli.init import init
from restguard.cli.issuer import issuer
from restguard.cli.master_key import master_key
from restguard.cli.oauth1 import oauth1
from restguard.cli.oauth2 import oauth2
from restguard.cli.output import emit_json
from restguard.cli.quickstart import quickstart
from restguard.cli.reload import reload
from restguard.cli.server import migrate, serve
from restguard.cli.sign import sign
from restguard.cli.signing_key import signing_key
from restguard.cli.token import token
from restguard.cli.user import user

VERSION_MESSAGE = f"restguard {__version__}"

#: Commands that read no configuration but accept ``restguard --config X ...`` silently, so that
#: a wrapper or alias that always passes --config still works for them.
_CONFIG_IRRELEVANT = frozenset({"version"})


def _reads_config(command: click.Command | None) -> bool:
    if command is None:
        return True  # an unknown command: click reports that
    if any(param.name == "config" for param in command.params):
        return True
    if isinstance(command, click.Group):
        return any(_reads_config(sub) for sub in command.commands.values())
    return False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    default=None,
    help=CONFIG_HELP + " Also accepted after the subcommand.",
)
@click.version_option(__version__, prog_name="restguard", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """restguard: secure any REST API behind a default-deny gateway (API keys, JWTs).

    Start with 'restguard quickstart', or 'restguard init --dir DIR' then 'restguard serve'.
    With --json a command prints exactly one JSON document on stdout. Where it reads a
    configuration, --config PATH may stand before or after the subcommand.
    """
    name = ctx.invoked_subcommand
    if config is None or name is None or name in _CONFIG_IRRELEVANT:
        return
    group = ctx.command
    assert isinstance(group, click.Group)
    if not _reads_config(group.get_command(ctx, name)):
        raise click.UsageError(f"'restguard {name}' reads no configuration; drop --config")


@click.command()
@click.option("--json", "as_json", is_flag=True, help='Print {"version": ...}.')
def version(as_json: bool) -> None:
    """The version of restguard (also 'restguard --version', 'python -m restguard version')."""
    if as_json:
        emit_json({"version": __version__})
    else:
        click.echo(VERSION_MESSAGE)


for command in (
    quickstart,
    init,
    check,
    serve,
    reload,
    migrate,
    apikey,
    app,
    sign,
    issuer,
    oauth2,
    oauth1,
    user,
    signing_key,
    master_key,
    token,
    audit,
    version,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="restguard")
