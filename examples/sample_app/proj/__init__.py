"""A small Celery app that qsetup ships to workers for its demo and tests."""
