"""``python -m netready.cli``: the same as the ``netready`` command."""

from netready.cli import main

main()
