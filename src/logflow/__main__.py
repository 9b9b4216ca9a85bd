"""``python -m logflow`` is the ``logflow`` command."""

from logflow.cli.main import cli

if __name__ == "__main__":
    cli()
