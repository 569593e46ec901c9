"""What a finished pass leaves behind: metrics, a log line, an Event when Ready changes, and its
writes' responses laid over the caches until the watch delivers them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

from . import metrics
from .api_errors import ApiConflict, ApiError
from .kinds import IsvcKey, object_key
from .recent import RecentWrites
from .reconcile import Outcome

logger = logging.getLogger("isvc_operator")


class OutcomeReporter:
    def __init__(self, recent: RecentWrites) -> None:
        self.recent = recent

    def __call__(
        self,
        key: IsvcKey,
        body: Mapping[str, Any],
        outcome: Outcome | None,
        error: BaseException | None,
        seconds: float,
    ) -> None:
        namespace, name = key
        if error is not None:
            metrics.record_pass(key, "error", seconds, None, error.status if isinstance(error, ApiError) else None)
            if isinstance(error, ApiConflict):  # someone wrote first: the next pass reads the newer object
                logger.info(
                    "reconcile %s/%s: a newer version was written meanwhile (%s); retrying",
                    namespace,
                    name,
                    error.message,
                )
            else:
                logger.warning("reconcile %s/%s failed after %.3fs: %s", namespace, name, seconds, error)
            return
        assert outcome is not None
        metrics.record_pass(key, outcome.result, seconds, outcome.ready_after)
        responses = dict(outcome.responses)
        if outcome.isvc_response:
            responses[object_key(outcome.isvc_response)] = outcome.isvc_response
        self.recent.record(key, responses)
        if outcome.result != "unchanged":
            logger.info(
                "reconcile %s/%s: %s (%d writes: %s) in %.3fs",
                namespace,
                name,
                outcome.result,
                outcome.writes,
                outcome.summary,
                seconds,
            )
        for reason, message in outcome.canary_events:
            kopf.event(cast(kopf.Body, dict(body)), type="Normal", reason=reason, message=message[:1024])
        if outcome.ready_changed and outcome.ready_after is not None:
            ready = outcome.ready_after
            kopf.event(
                cast(kopf.Body, dict(body)),  # kopf reads apiVersion, kind and metadata from any mapping
                type="Normal" if ready["status"] != "False" else "Warning",
                reason=ready["reason"],
                message=f"Ready={ready['status']}: {ready['message']}"[:1024],
            )
