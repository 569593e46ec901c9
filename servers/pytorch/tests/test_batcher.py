"""The batcher in-process, with stand-in models: what a model's unsplittable outputs mark, and a
request arriving while the workers leave at shutdown."""

import asyncio
import threading
import time

import numpy as np
import pytest

from isvc_pytorch_server import batcher as batcher_module
from isvc_pytorch_server.batcher import Batcher
from isvc_pytorch_server.errors import ApiError


class Model:
    """Stand-in for a LoadedModel: rows in, rows out (or one summary row when `per_row` is False);
    the first pass waits on `gate`, so the requests after it queue up and share the next pass."""

    def __init__(self, per_row: bool = True) -> None:
        self.batchable = True
        self.per_row = per_row
        self.passes: list[int] = []
        self.gate = threading.Event()

    def run(self, arrays):
        if not self.passes:
            self.gate.wait(5)
        self.passes.append(arrays[0].shape[0])
        x = arrays[0]
        return {"y": x * 2 if self.per_row else x.sum(axis=0, keepdims=True)}


async def three_requests(batcher: Batcher, model: Model) -> None:
    row = np.ones((1, 3), np.float32)
    first = asyncio.ensure_future(batcher.infer(model, [row], 1))
    await asyncio.sleep(0.05)  # the first pass runs (and waits on the gate)
    rest = [asyncio.ensure_future(batcher.infer(model, [row], 1)) for _ in range(2)]
    await asyncio.sleep(0.05)  # both queued behind it
    model.gate.set()
    await asyncio.gather(first, *rest)


def test_a_new_model_at_the_address_of_an_unsplittable_one_is_batched(monkeypatch):
    # A new version loaded after the old one is freed can get the same address, so the same id():
    # every model gets one id here, as if the allocator had reused it.
    monkeypatch.setattr(batcher_module, "id", lambda obj: 4096, raising=False)

    async def main():
        batcher = Batcher(max_batch_size=8, merge_fraction=0)
        batcher.start(asyncio.get_running_loop())
        old = Model(per_row=False)
        await three_requests(batcher, old)
        assert old.passes == [1, 2, 1, 1], "the failed batch is re-run one request at a time"
        new = Model()
        await three_requests(batcher, new)
        batcher.stop()
        assert new.passes == [1, 2], "the queued requests share one pass"

    asyncio.run(main())


def test_a_request_arriving_while_the_workers_leave_is_refused_not_left_waiting():
    async def main():
        batcher = Batcher(num_threads=1)
        leaving = batcher._worker

        def worker_that_lingers():
            leaving()
            time.sleep(1.0)  # the thread is still alive after deciding to exit

        batcher._worker = worker_that_lingers
        batcher.start(asyncio.get_running_loop())
        batcher.stop(timeout=0)
        await asyncio.sleep(0.1)  # the worker has found nothing queued and decided to exit
        with pytest.raises(ApiError) as info:
            await asyncio.wait_for(batcher.infer(Model(), [np.ones((1, 3), np.float32)], 1), 2)
        assert info.value.status == 503

    asyncio.run(main())
