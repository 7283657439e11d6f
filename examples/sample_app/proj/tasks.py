"""Tasks of the sample app."""

import socket
import time

from proj.celery import app


@app.task
def add(x: int, y: int) -> int:
    """Return x + y."""
    return x + y


@app.task
def where() -> str:
    """Return the hostname of the worker that ran the task."""
    return socket.gethostname()


@app.task
def sleep(seconds: float) -> float:
    """Sleep, then return how long; used to test warm shutdowns."""
    time.sleep(seconds)
    return seconds
