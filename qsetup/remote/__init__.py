"""The wire: ansible-runner runs of the playbooks, a task sent through the deployed broker."""
