"""The `moecollab` command group; each command lives in account, local or remote."""
from __future__ import annotations

import click

from moecollab_cli import __version__, account, local, remote

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="moecollab")
def main() -> None:
    """Contribute experts to a MoECollab platform from the command line.

    \b
    From nothing to an uploaded expert:
      moecollab login --url https://moecollab.example.org
      moecollab train --data my-domain/ --kind head --out my-expert/
      moecollab push my-expert/ --domain my-domain --wait

    Every command takes --json for scripts and exits non-zero when it fails. The token is kept
    in the user's config folder (MOECOLLAB_CONFIG_DIR overrides it) with mode 0600;
    MOECOLLAB_TOKEN and MOECOLLAB_URL override what is stored.
    """


for command in (account.login, account.logout, local.train, local.inspect, remote.push,
                remote.status, remote.pull, remote.predict):
    main.add_command(command)
