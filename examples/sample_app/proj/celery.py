"""The Celery application (``celery -A proj`` finds ``proj.celery.app``).

qsetup sets CELERY_BROKER_URL and CELERY_RESULT_BACKEND in the workers'
environment files, so nothing here names a broker or holds a password.
"""

from celery import Celery

app = Celery("proj", include=["proj.tasks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    result_expires=3600,
)
