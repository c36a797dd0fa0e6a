"""Command-line tools besides the stage scripts: `python -m tools.<name> --help`."""
