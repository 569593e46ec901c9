"""One exception type that carries the HTTP status a client should see."""


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ModelLoadError(Exception):
    """A version directory that cannot be turned into a runnable model; the message says why."""
