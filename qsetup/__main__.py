"""Allow ``python -m qsetup``."""

from qsetup.cli import main

main()
