"""The Lease's renewals stop for good before its release (`WriteGate`), or the election's thread
could renew once more after the release and take the emptied Lease back."""

from __future__ import annotations

import threading

from isvc_operator.leader import WriteGate


def test_a_closed_gate_makes_no_more_writes() -> None:
    gate, calls = WriteGate(), []
    assert gate.write(lambda: calls.append("renew") or True)
    assert gate.close(timeout=1)
    assert not gate.write(lambda: calls.append("renew after close") or True)
    assert calls == ["renew"]


def test_a_failed_write_reads_as_false() -> None:
    assert not WriteGate().write(lambda: False)


def test_close_waits_for_the_write_in_flight() -> None:
    """A renewal that has begun ends before the gate closes (else its PUT could land after the
    release); a renewal that hangs past the timeout leaves the gate open and says so."""
    gate = WriteGate()
    entered, finish = threading.Event(), threading.Event()

    def slow_renewal() -> bool:
        entered.set()
        finish.wait()
        return True

    writer = threading.Thread(target=gate.write, args=(slow_renewal,), daemon=True)
    writer.start()
    assert entered.wait(30), "the renewal never started"
    assert not gate.close(timeout=0.1), "closed while a renewal was in flight"
    finish.set()
    writer.join(30)
    assert gate.close(timeout=30)
    assert not gate.write(lambda: True)
