"""Vars plugin qsetup_run: each host's variables for the run, from qsetup's deploy.

The deploy writes one file per host into its private scratch directory (never the run
directory; ``qsetup.ops.deploy.write_host_vars``): the secrets, the rendered files'
checksums and, when its first read answered on every host, that host's read and its
comparison with the plan (``qsetup_host``, ``qsetup_release``, ``qsetup_hostname``,
``qsetup_converge``). ``QSETUP_RUN_VARS_DIR`` in Ansible's environment names the
directory. Every value is tagged ``!unsafe`` (data, never a template). Each file is
parsed once per run: Ansible asks vars plugins for every task on every host, and gets
a new instance of the plugin each time, so the parsed files are kept in this module
(an instance's cache was empty every time: 6.2 of the controller's 40 CPU-seconds of a
3-host first deploy went to parsing these files again).
This replaced an include_vars task: one task result on every host, kept out of logs by
no_log; a vars plugin prints nothing.

It is also the first of qsetup's plugins Ansible's main process loads, before any
task: on its first call it links Ansible's per-process module payload cache
(``<local tmp>/ansiballz_cache``) to ``QSETUP_PAYLOAD_CACHE``, the lasting directory
``qsetup.remote.runner.payload_cache_dir`` names by what the payloads hold, so a run
builds only the payloads no earlier run of this qsetup built.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ansible.inventory.host import Host
from ansible.plugins.vars import BaseVarsPlugin

DOCUMENTATION = r"""
name: qsetup_run
short_description: Each host's variables for a qsetup deploy (secrets, read, comparison)
description:
  - Loads <QSETUP_RUN_VARS_DIR>/<inventory host name>.yml as that host's variables.
# No options, said: a vars plugin whose documentation has no options is never recorded
# as configured, so Ansible parsed this YAML again on every variables lookup (each
# task of each host; about 0.05 ms each).
options: {}
"""

ENV = "QSETUP_RUN_VARS_DIR"
CACHE_ENV = "QSETUP_PAYLOAD_CACHE"

_PARSED: dict[tuple[str, int, int], dict[str, Any]] = {}
"""Each file's variables by (path, modification time, size): one parse per process."""
_LINKED: list[bool] = []


def link_payload_cache(local_tmp: str, cache: str | None) -> None:
    """Point ``<local_tmp>/ansiballz_cache`` at ``cache``, once per process (best effort)."""
    if _LINKED or not cache:
        return
    _LINKED.append(True)
    link = Path(local_tmp) / "ansiballz_cache"
    try:
        if Path(cache).is_dir() and not link.exists():
            link.symlink_to(cache, target_is_directory=True)
    except OSError:  # another process made it, or no link here: Ansible builds as usual
        pass


class VarsModule(BaseVarsPlugin):
    """Host variables from the run's per-host files (none without ``QSETUP_RUN_VARS_DIR``)."""

    REQUIRES_ENABLED = False

    def get_vars(self, loader: Any, path: str, entities: Any, cache: bool = True) -> dict[str, Any]:
        """The variables of the hosts among ``entities`` (groups get none)."""
        if not _LINKED:
            from ansible import constants as C

            link_payload_cache(str(C.DEFAULT_LOCAL_TMP), os.environ.get(CACHE_ENV))
        folder = os.environ.get(ENV)
        data: dict[str, Any] = {}
        if not folder:
            return data
        for entity in entities if isinstance(entities, list) else [entities]:
            if not isinstance(entity, Host):
                continue
            file = Path(folder) / f"{entity.name}.yml"
            try:
                st = file.stat()
            except OSError:
                continue
            key = (str(file), st.st_mtime_ns, st.st_size)
            if key not in _PARSED:
                _PARSED[key] = dict(loader.load_from_file(key[0], cache="none") or {})
            data.update(_PARSED[key])
        return data
