"""Results -> rich tables, live progress and JSON; called only from ``qsetup.cli``."""
