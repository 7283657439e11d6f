"""qsetup: stand up RabbitMQ, Celery workers and Flower from one YAML inventory."""

__version__ = "0.1.0"
