"""The wire: a task sent through the deployed broker from this machine."""
