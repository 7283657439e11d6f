"""The commands that change hosts: deploy, restart, backup and restore, the demo."""
