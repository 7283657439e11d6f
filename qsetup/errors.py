"""The one error tree qsetup raises for problems a user can fix.

Every message says what is wrong and how to fix it; the CLI prints it as one
line (or one line per problem) and exits 1.
"""

from __future__ import annotations


class QsetupError(Exception):
    """A problem the user can fix; the message says how."""

    exit_code = 1

    def lines(self) -> list[str]:
        """Return the lines to print, one per problem."""
        return [str(self)]


class InventoryError(QsetupError):
    """The inventory or secrets file is missing, unreadable or invalid."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))

    def lines(self) -> list[str]:
        """Return one line per problem."""
        return list(self.problems)


class SecretsError(QsetupError):
    """A secrets file is unsafe, unreadable or lacks a referenced secret."""


class RenderError(QsetupError):
    """A template could not be rendered from the inventory."""


class DeployError(QsetupError):
    """A deploy could not start (a failed play is a result, not this)."""


class SandboxError(QsetupError):
    """The local sandbox hosts cannot be built, started or stopped."""


class StatusError(QsetupError):
    """A status check could not start."""


class BrokerError(QsetupError):
    """The broker's management API cannot be reached, or refused a request (exit 3)."""

    exit_code = 3  # like a degraded status or a failed deploy: the input was fine

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))

    def lines(self) -> list[str]:
        """Return one line per broker node asked."""
        return list(self.problems)
