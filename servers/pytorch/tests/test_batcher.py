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


class QuickModel:
    """Stand-in whose passes take `seconds`; records the thread and rows of every pass."""

    def __init__(self, seconds: float = 0.0, pass_seconds: float | None = None) -> None:
        self.batchable = True
        self.seconds = seconds
        self.pass_seconds = pass_seconds
        self.threads: list[str] = []
        self.passes: list[int] = []

    def run(self, arrays):
        self.threads.append(threading.current_thread().name)
        self.passes.append(arrays[0].shape[0])
        if self.seconds:
            time.sleep(self.seconds)
        x = arrays[0]
        if (x < 0).any():
            raise ValueError("negative input")
        return {"y": x * 2}


def test_short_passes_run_on_the_event_loop_and_the_requests_of_one_turn_share_one():
    async def main():
        batcher = Batcher(max_batch_size=8)
        batcher.start(asyncio.get_running_loop())
        model = QuickModel(pass_seconds=0.0001)
        rows = [np.full((1, 2), i, np.float32) for i in range(5)]
        results = await asyncio.gather(*[batcher.infer(model, [r], 1) for r in rows])
        batcher.stop()
        assert model.threads == [threading.current_thread().name], "one pass, on the loop's thread"
        assert model.passes == [5]
        assert [r["y"].tolist() for r in results] == [[[2 * i, 2 * i]] for i in range(5)]

    asyncio.run(main())


def test_passes_on_the_loop_keep_max_batch_size_and_a_bad_request_fails_alone():
    async def main():
        batcher = Batcher(max_batch_size=4)
        batcher.start(asyncio.get_running_loop())
        model = QuickModel(pass_seconds=0.0001)
        rows = [np.full((1, 2), -1 if i == 2 else i, np.float32) for i in range(6)]
        results = await asyncio.gather(*[batcher.infer(model, [r], 1) for r in rows], return_exceptions=True)
        batcher.stop()
        assert model.passes[:2] == [4, 1], "a full pass of 4, then the failed one re-run request by request"
        assert isinstance(results[2], ValueError)
        assert [r["y"][0, 0] for i, r in enumerate(results) if i != 2] == [0, 2, 6, 8, 10]

    asyncio.run(main())


def test_a_model_whose_passes_grow_slow_goes_back_to_the_batch_threads():
    async def main():
        batcher = Batcher(max_batch_size=8, loop_pass_s=0.005)
        batcher.start(asyncio.get_running_loop())
        model = QuickModel(seconds=0.02, pass_seconds=0.0001)  # measured fast once, slow from now on
        row = np.ones((1, 2), np.float32)
        for _ in range(4):
            await batcher.infer(model, [row], 1)
        batcher.stop()
        loop_thread = threading.current_thread().name
        assert model.threads[0] == loop_thread
        assert model.threads[-1] != loop_thread and model.threads[-1].startswith("batch-worker")
        assert model.pass_seconds > 0.005

    asyncio.run(main())


def test_a_slow_model_never_runs_on_the_loop_and_zero_turns_the_loop_road_off():
    async def main():
        slow = Batcher(max_batch_size=8)
        off = Batcher(max_batch_size=8, loop_pass_s=0)
        for b in (slow, off):
            b.start(asyncio.get_running_loop())
        row = np.ones((1, 2), np.float32)
        slow_model = QuickModel(pass_seconds=0.01)
        fast_model = QuickModel(pass_seconds=0.0)
        await slow.infer(slow_model, [row], 1)
        await off.infer(fast_model, [row], 1)
        for b in (slow, off):
            b.stop()
        assert slow_model.threads[0].startswith("batch-worker")
        assert fast_model.threads[0].startswith("batch-worker")

    asyncio.run(main())


def test_requests_queued_on_the_loop_finish_at_stop_and_later_ones_are_refused():
    async def main():
        batcher = Batcher(max_batch_size=8, batch_timeout_s=0.05)  # the loop's pass waits 50 ms for rows
        batcher.start(asyncio.get_running_loop())
        model = QuickModel(pass_seconds=0.0001)
        row = np.ones((1, 2), np.float32)
        queued = [asyncio.ensure_future(batcher.infer(model, [row], 1)) for _ in range(3)]
        await asyncio.sleep(0)  # queued, the pass not yet run
        await asyncio.get_running_loop().run_in_executor(None, batcher.stop)
        with pytest.raises(ApiError) as info:
            await batcher.infer(model, [row], 1)
        assert info.value.status == 503
        results = await asyncio.wait_for(asyncio.gather(*queued), 2)
        assert model.passes == [3] and all(r["y"].tolist() == [[2, 2]] for r in results)

    asyncio.run(main())
