"""Managed by qsetup; changes here are overwritten on the next deploy.

Workers, beat and Flower load the app through this module (``celery -A qsetup_celery``):
it imports the app named by QSETUP_APP (Flower: none) and adds the settings in QSETUP_CELERY_SETTINGS
(JSON), both from the service's environment file; the settings are those the
inventory's broker needs (quorum queues). The app's own code and configuration stay
as they are.
"""

import json
import os

from celery.app.defaults import DEFAULTS
from celery.app.utils import find_app

SETTINGS = json.loads(os.environ.get("QSETUP_CELERY_SETTINGS") or "{}")

if os.environ.get("QSETUP_APP"):
    app = find_app(os.environ["QSETUP_APP"])
else:  # Flower: no app of its own, only the broker connection's settings
    from celery import Celery

    app = Celery("qsetup")
if SETTINGS:
    settings = dict(SETTINGS)
    transport = dict(app.conf.broker_transport_options or {})
    transport.update(settings.pop("broker_transport_options", {}))
    settings["broker_transport_options"] = transport
    app.conf.update(settings)
    if settings.get("task_create_missing_queue_type") == "quorum" and (
        "task_create_missing_queue_type" not in DEFAULTS
    ):
        # Celery 5.5 declares queues named only by --queues as classic queues; make them
        # quorum queues as later releases do with task_create_missing_queue_type.
        queues = app.amqp.queues
        new_missing = queues.new_missing

        def _quorum_missing(name, _new=new_missing):
            queue = _new(name)
            queue.queue_arguments = {**(queue.queue_arguments or {}), "x-queue-type": "quorum"}
            return queue

        queues.new_missing = _quorum_missing
    if settings.get("task_default_queue_type") == "quorum":
        # Celery >= 5.5 sets up native delayed delivery through every broker URL in turn,
        # retrying each one that does not answer: after a node dies a worker would stop
        # consuming for as long as the dead node takes to fail three times. The exchanges
        # and queues it declares belong to the whole cluster, so the first node that
        # answers is enough.
        try:
            from celery.worker.consumer import delayed_delivery as _delayed
        except ImportError:
            _delayed = None
        if _delayed is not None and hasattr(_delayed.DelayedDelivery, "_setup_delayed_delivery"):

            def _start_on_first_node(self, c):
                self._validate_configuration(c.app)
                urls = c.app.conf.broker_url
                for url in urls.split(";") if isinstance(urls, str) else list(urls):
                    try:
                        self._setup_delayed_delivery(c, url.strip())
                        return
                    except Exception:  # noqa: BLE001 - the next node may answer
                        continue
                _delayed.logger.warning("native delayed delivery: no broker node answered")

            _delayed.DelayedDelivery.start = _start_on_first_node
