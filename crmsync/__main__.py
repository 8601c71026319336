"""`python -m crmsync` is the `crmsync` command."""

from crmsync.cli import main

main(prog_name="crmsync")
