"""`python -m workerpool` is the `workerpool` command."""

from .cli import main

main()
