"""``python -m autoslim``: the same CLI as the ``autoslim`` command."""

from autoslim.cli import main

main()
