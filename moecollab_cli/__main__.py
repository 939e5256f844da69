"""`python -m moecollab_cli` runs the `moecollab` command."""
from __future__ import annotations

from moecollab_cli.cli import main

if __name__ == "__main__":
    main(prog_name="moecollab")
