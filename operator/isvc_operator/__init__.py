"""isvc-operator: turns an InferenceService into a running, reachable, observable model server."""

__version__ = "0.1.0"
