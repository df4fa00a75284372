"""``python -m avsent`` is the ``avsent`` command."""

from avsent.cli import main

main()
