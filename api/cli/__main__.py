"""`python -m api.cli ...`, the same as the `ragql` entry point."""

from api.cli import main

main()
