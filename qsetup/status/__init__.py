"""``qsetup status``: is everything the inventory describes up and as described?

``check_status(loaded)`` checks every host over SSH in parallel (OpenSSH's client), the broker
through its management API, the workers through a Celery broadcast, Flower over
HTTP and each TLS endpoint's certificate with a handshake, all with bounded
timeouts, and returns a frozen ``SystemStatus`` whose ``problems`` name a host and a
unit or object each. No typer or rich here.

Import what you use from its module (``qsetup.status.check``, ``qsetup.status.model``):
this package imports nothing, so ``qsetup status`` starts its SSH round
(``qsetup.status.ssh``) before the broker, worker and Flower clients load.
"""

from __future__ import annotations
