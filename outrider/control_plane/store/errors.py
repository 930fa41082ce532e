"""What the store raises, for its callers to catch by kind (the app maps :class:`StoreUnavailable` to 503)."""

from __future__ import annotations


class AmbiguousRun(Exception):
    """A run id that names runs in several visible namespaces; ``namespaces`` lists them."""

    def __init__(self, run_id: str, namespaces: list[str]) -> None:
        super().__init__(f"run {run_id!r} exists in several namespaces: {', '.join(namespaces)}")
        self.namespaces = namespaces


class RebuildRefused(Exception):
    """A rebuild would lose data (the log was swept); the message says why and how to insist."""


class ProjectionsMismatch(Exception):
    """A SQLite database's projections file does not belong to its log file (its checkpoint is past the log's
    end); the message says which files and what to do. Raised at startup, before anything is appended or projected."""


class StoreUnavailable(Exception):
    """The store could not commit or read; the request must answer 503 and the client retry."""


class ProjectionLagging(StoreUnavailable):
    """The projector's index of the log had not reached ``wanted`` (it was at ``reached``) within the wait."""

    def __init__(self, reached: int, wanted: int) -> None:
        super().__init__(f"the projection has reached log position {reached}, not yet {wanted}; retry shortly")
        self.reached = reached
        self.wanted = wanted


class SubscriberDropped(Exception):
    """The subscriber fell more than its buffer behind and was disconnected."""


class SubscriptionEnded(Exception):
    """The server is shutting down: the subscriber should finish its response."""
