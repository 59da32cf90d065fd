"""``python -m clusterfarm`` is the ``clusterfarm`` command."""

from clusterfarm.cli import main

main()
