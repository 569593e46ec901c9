"""Reads the predictor's ServiceAccount and the Secrets it lists: the observe step behind the storage
init container's credentials (`builders.storage_credentials` turns them into env and volumes).

Only `get` (the chart grants exactly that on serviceaccounts and secrets): no list or watch of
Secrets across the cluster. What was found is kept for `ttl` seconds, without any Secret value
(only names, annotations and key names), so a burst of passes over isvcs sharing an account reads
it once; a change of the account or its Secrets is picked up by the first pass after that. What is
missing is never kept: the pass fails, the isvc says which object is missing, and the retries
(with backoff) read again until it appears.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from .builders.storage_credentials import AccountSecrets, without_values
from .kube_api import KubeApi


class StorageCredentialsNotFound(Exception):
    """The ServiceAccount named by the predictor, or a Secret it lists, does not exist; the message names it."""


class StorageAccounts:
    def __init__(self, api: KubeApi, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.ttl = ttl
        self.clock = clock
        self._found: dict[tuple[str, str], tuple[float, AccountSecrets]] = {}

    async def read(self, namespace: str, name: str) -> AccountSecrets:
        """The account and its Secrets (values dropped), or StorageCredentialsNotFound naming what is missing."""
        key = (namespace, name)
        cached = self._found.get(key)
        if cached is not None and self.clock() - cached[0] < self.ttl:
            return cached[1]
        account = await asyncio.to_thread(self.api.get, "v1", "ServiceAccount", namespace, name)
        if account is None:
            self._found.pop(key, None)
            raise StorageCredentialsNotFound(
                f"ServiceAccount {name} (spec.predictor.serviceAccountName) not found in namespace {namespace}: "
                "create it, listing the Secrets with the store's credentials under `secrets`, or remove "
                "serviceAccountName for anonymous access"
            )
        secrets: list[dict[str, Any]] = []
        for ref in account.get("secrets") or []:
            secret_name = ref.get("name") if isinstance(ref, dict) else None
            if not secret_name:
                continue
            secret = await asyncio.to_thread(self.api.get, "v1", "Secret", namespace, secret_name)
            if secret is None:
                self._found.pop(key, None)
                raise StorageCredentialsNotFound(
                    f"Secret {secret_name}, listed by ServiceAccount {name}, not found in namespace {namespace}: "
                    "create it, or remove it from the ServiceAccount's secrets"
                )
            secrets.append(without_values(secret))
        metadata = account.get("metadata") or {}
        found = AccountSecrets(
            account={"metadata": {"name": name, "annotations": dict(metadata.get("annotations") or {})}},
            secrets=tuple(secrets),
        )
        self._found[key] = (self.clock(), found)
        return found

    def forget(self, namespace: str) -> None:
        """Drop what is known about a namespace's accounts (e.g. the namespace is gone)."""
        for key in [k for k in self._found if k[0] == namespace]:
            del self._found[key]
