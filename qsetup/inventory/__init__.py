"""What the user wrote: the inventory's YAML with positions, its models and secrets, and the loader.

Lowest stage of the pipeline: imports nothing of qsetup but ``errors`` and ``resources``.
"""
