"""Dynamic batching: concurrent requests share one forward pass, run off the event loop.

Requests are queued with a key (model, per-row shapes, dtypes); worker threads take the oldest
request and every queued request with the same key, up to ``max_batch_size`` rows, concatenate
them, run one forward pass, and hand each request its slice. While a pass runs, new requests
pile up, so under load batches grow on their own. Two optional waits for more rows:
``batch_timeout`` (TF Serving's ``batch_timeout_micros``, from the first request's arrival at an
idle worker; 0 by default) and the merge wait (on by default): when a worker finishes a pass and
work is queued, it waits up to ``merge_fraction`` of that pass (at most 10 ms) for the clients it
just answered to come back, so that a closed loop of N clients fills batches of N rather than
settling into two half-size batches. At one client at a time neither wait ever happens.

A failed batch is re-run one request at a time, so one bad request cannot fail its neighbours.
Results go back to the event loop with one ``call_soon_threadsafe`` per batch.

Passes that take less than ``loop_pass_s`` (a recent average per model) run on the event loop
instead: the requests that arrived in one turn of the loop share a pass run right after that turn.
For a small model the hand-off to a worker thread (a lock, a wake-up, the GIL changing hands twice,
a wake-up of the loop) costs more than the forward pass itself, and it is the event loop that
limits such a server. A model whose passes grow slower goes back to the worker threads.
Passes on the loop use one torch thread (a team of torch threads spun up for a pass of a few
microseconds costs more than the pass): torch's thread count is per thread, so the loop's thread
is set to one and each worker thread to ``threads_per_pass``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque

import numpy as np

from .errors import ApiError

log = logging.getLogger(__name__)
MAX_MERGE_WAIT_S = 0.01
PASS_TIME_WEIGHT = 0.2  # weight of the newest pass in a model's average pass time


class _Item:
    __slots__ = ("model", "key", "arrays", "rows", "future", "t0")

    def __init__(self, model, key, arrays, rows, future):
        self.model = model
        self.key = key
        self.arrays = arrays
        self.rows = rows
        self.future = future
        self.t0 = time.perf_counter()


class NotSplittable(Exception):
    """The model's outputs do not have one row per input row, so a batch cannot be split."""


class Batcher:
    def __init__(
        self,
        max_batch_size: int = 64,
        batch_timeout_s: float = 0.0,
        num_threads: int = 1,
        metrics=None,
        merge_fraction: float = 0.3,
        loop_pass_s: float = 0.0005,
        threads_per_pass: int | None = None,
    ):
        self.max_batch_size = max(1, int(max_batch_size))
        self.merge_fraction = max(0.0, float(merge_fraction))
        self.batch_timeout_s = max(0.0, float(batch_timeout_s))
        self.num_threads = max(1, int(num_threads))
        self.loop_pass_s = max(0.0, float(loop_pass_s))
        self.threads_per_pass = threads_per_pass  # torch threads of a worker's pass; None: leave torch's
        self.metrics = metrics
        self._loop_queue: deque[_Item] = deque()  # requests for passes on the event loop (loop thread only)
        self._loop_rows = 0
        self._loop_flush: asyncio.Handle | None = None
        self._pending: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = 0  # workers that have not decided to exit (lock held)
        self._running = 0  # passes running now (lock held)
        self._running_rows = 0  # and their rows

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the workers; called on the event loop's thread."""
        self._loop = loop
        if self.threads_per_pass is not None and self.loop_pass_s > 0:
            import torch

            torch.get_num_threads()  # torch sets a thread's count on first use: let that happen first
            torch.set_num_threads(1)  # this thread's passes only; the workers set their own
        self._accepting = self.num_threads
        for i in range(self.num_threads):
            t = threading.Thread(target=self._worker, name=f"batch-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish every queued request, then stop the workers."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    def pending(self) -> int:
        return len(self._pending) + len(self._loop_queue)

    def runs_on_loop(self, model) -> bool:
        """Whether the model's passes are short enough to run on the event loop."""
        seconds = getattr(model, "pass_seconds", None)
        return self.loop_pass_s > 0 and seconds is not None and seconds <= self.loop_pass_s

    async def infer(self, model, arrays: list[np.ndarray], rows: int | None) -> dict[str, np.ndarray]:
        """Queue one request; returns its outputs (or raises the model's exception)."""
        if rows is None or not model.batchable:
            key = object()  # unique: never batched with anything
        else:
            # id(model) is unique among the models queued: each queued item holds its model.
            key = (id(model),) + tuple((a.shape[1:], a.dtype.num) for a in arrays)
        fut = self._loop.create_future()
        item = _Item(model, key, arrays, rows or 0, fut)
        if self.runs_on_loop(model):
            self._queue_on_loop(item)
            return await fut
        with self._cond:
            if self._stopping and not self._accepting:
                # Every worker has decided to exit (a thread can still be alive while it leaves):
                # queued now, the request would wait forever.
                raise ApiError(503, "the server is shutting down")
            self._pending.append(item)
            if self.num_threads > 1:
                self._cond.notify_all()  # an idle worker, or one gathering rows for its next pass
            else:
                self._cond.notify()
        return await fut

    # ---- passes on the event loop ----------------------------------------------------------------
    def _queue_on_loop(self, item: _Item) -> None:
        if self._stopping:
            raise ApiError(503, "the server is shutting down")
        self._loop_queue.append(item)
        self._loop_rows += item.rows or 1
        handle = self._loop_flush
        if handle is None:
            # Run after the callbacks already due in this turn: the requests read together share a pass.
            if self.batch_timeout_s > 0:
                self._loop_flush = self._loop.call_later(self.batch_timeout_s, self._flush_loop)
            else:
                self._loop_flush = self._loop.call_soon(self._flush_loop)
        elif self._loop_rows >= self.max_batch_size and isinstance(handle, asyncio.TimerHandle):
            handle.cancel()
            self._loop_flush = self._loop.call_soon(self._flush_loop)

    def _flush_loop(self) -> None:
        queued, self._loop_queue = self._loop_queue, deque()
        self._loop_rows = 0
        self._loop_flush = None
        while queued:
            _deliver(self._execute(self._take(queued[0].key, queued)))

    # ---- worker side ---------------------------------------------------------------------------
    def _worker(self) -> None:
        if self.threads_per_pass is not None:
            import torch

            torch.set_num_threads(self.threads_per_pass)
        last_rows, last_seconds = 0, 0.0
        while True:
            with self._cond:
                busy = bool(self._pending)  # work was waiting while the previous batch ran
                while True:
                    while not self._pending:
                        if self._stopping:
                            self._accepting -= 1  # decided under the lock that queues requests
                            return
                        self._cond.wait()
                    first = self._pending[0]
                    if self._stopping or not isinstance(first.key, tuple):
                        break
                    if self._running and self.merge_fraction > 0 and last_seconds:
                        # Another worker's pass is running, so the CPU is busy anyway: gather an
                        # even share of the rows in flight (the running passes' rows plus ours,
                        # whose clients are coming back) before starting. The clients then settle
                        # into one group per worker, and passes stay as large as they can be.
                        target = min(
                            self.max_batch_size, max(1, -(-(self._running_rows + last_rows) // (self._running + 1)))
                        )
                        self._wait_rows(
                            first, target, first.t0 + min(MAX_MERGE_WAIT_S, self.merge_fraction * last_seconds)
                        )
                        busy = False
                        if self._pending and self._pending[0] is first:
                            break  # enough rows, or the wait is up
                        continue  # another worker took the request: look again
                    if busy and self.merge_fraction > 0 and last_rows:
                        # Under load the queue holds about half the clients; the other half is
                        # reading the answers just sent and will be back in a moment. Wait a
                        # little (a fraction of the last pass) so the two halves share one pass.
                        target = min(self.max_batch_size, self._rows_for(first.key) + last_rows)
                        self._wait_rows(
                            first,
                            target,
                            time.perf_counter() + min(MAX_MERGE_WAIT_S, self.merge_fraction * last_seconds),
                        )
                        busy = False
                    elif not busy and self.batch_timeout_s > 0:
                        self._wait_rows(first, self.max_batch_size, first.t0 + self.batch_timeout_s)
                    if self._pending:
                        first = self._pending[0]
                        break
                batch = self._take(first.key, self._pending)
                rows = sum(it.rows for it in batch)
                self._running_rows += rows or 1
                self._running += 1
            t0 = time.perf_counter()
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._running_rows -= rows or 1
                    self._running -= 1
            last_seconds = time.perf_counter() - t0
            last_rows = rows

    def _wait_rows(self, first: _Item, target: int, deadline: float) -> None:
        """Wait (lock held) until ``target`` rows share the first item's key, or ``deadline``."""
        while self._rows_for(first.key) < target:
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or self._stopping:
                return
            self._cond.wait(remaining)
            if not self._pending or self._pending[0] is not first:
                return  # another worker took it

    def _rows_for(self, key) -> int:
        return sum(it.rows for it in self._pending if it.key == key)

    def _take(self, key, pending: deque[_Item]) -> list[_Item]:
        """Oldest item plus every queued item with the same key, up to max_batch_size rows."""
        first = pending.popleft()
        batch = [first]
        if not isinstance(key, tuple):
            return batch
        rows = first.rows
        if rows >= self.max_batch_size:
            return batch
        keep = []
        while pending:
            it = pending.popleft()
            if it.key == key and rows + it.rows <= self.max_batch_size:
                batch.append(it)
                rows += it.rows
                if rows >= self.max_batch_size:
                    break
            else:
                keep.append(it)
        if keep:
            pending.extendleft(reversed(keep))
        return batch

    def _run(self, batch: list[_Item]) -> None:
        self._loop.call_soon_threadsafe(_deliver, self._execute(batch))

    def _execute(self, batch: list[_Item]) -> list:
        """One pass (or, when it fails, one per request); returns (item, outputs, exception) each."""
        t_start = time.perf_counter()
        results = []
        try:
            results = self._forward(batch)
        except Exception as e:
            if len(batch) > 1:
                if isinstance(e, NotSplittable):
                    # On the model itself: a mark by id() outlived the model, and a new version
                    # at the same address lost batching.
                    batch[0].model.batchable = False
                    log.warning("model outputs are not one row per input row (%s); batching is off for it", e)
                else:
                    log.info("a batch of %d requests failed (%s); running them one by one", len(batch), e)
                results = []
                for it in batch:
                    try:
                        results.extend(self._forward([it]))
                    except Exception as e1:
                        results.append((it, None, e1))
            else:
                results = [(batch[0], None, e)]
        seconds = time.perf_counter() - t_start
        model = batch[0].model
        previous = getattr(model, "pass_seconds", None)
        model.pass_seconds = seconds if previous is None else previous + PASS_TIME_WEIGHT * (seconds - previous)
        m = self.metrics
        if m is not None:
            m.inference.observe(seconds)
            m.batch_size.observe(sum(it.rows for it in batch) or 1)
            m.batch_requests.observe(len(batch))
            for it in batch:
                m.queue_wait.observe(t_start - it.t0)
        return results

    def _forward(self, batch: list[_Item]):
        model = batch[0].model
        if len(batch) == 1:
            return [(batch[0], model.run(batch[0].arrays), None)]
        n_inputs = len(batch[0].arrays)
        arrays = [np.concatenate([it.arrays[i] for it in batch]) for i in range(n_inputs)]
        outputs = model.run(arrays)
        total = sum(it.rows for it in batch)
        for name, a in outputs.items():
            if a.ndim == 0 or a.shape[0] != total:
                raise NotSplittable(f"output {name!r} has shape {list(a.shape)} for {total} input rows")
        results = []
        start = 0
        for it in batch:
            end = start + it.rows
            results.append((it, {k: a[start:end] for k, a in outputs.items()}, None))
            start = end
        return results


def _deliver(results) -> None:
    for item, value, exc in results:
        fut = item.future
        if fut.done():  # the client went away and the request task was cancelled
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)
