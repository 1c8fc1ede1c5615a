"""The slow-client rule of course.net.fanout, checked alone (pure functions), and its small tools.

The rule's behaviour over real sockets (a stalled reader beside healthy chatters, bursts,
bounded stops) is tested where it is used: tests/test_live.py (hub) and tests/test_chat.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from course.net.fanout import (Backlog, Load, SlowRule, Verdict, close_within, judge, observe,
                           stalled_reader)

CAP, BOUND = 8, 1000
RULE = SlowRule(queue_size=CAP, grace=1.0, max_bytes=10_000, max_buffered=BOUND)


def step(backlog, queued, buffered=0, now=0.0):
    return observe(backlog, Load(queued, queued * 100, buffered), now, RULE)


def history(*samples):
    """Feed ``(now, queued, buffered)`` samples to observe, from an empty history."""
    backlog = Backlog()
    for now, queued, buffered in samples:
        backlog = step(backlog, queued, buffered, now)
    return backlog


@pytest.mark.parametrize("samples, full_since", [
    ([(0, 3, 0)], None),                         # room in the queue
    ([(0, 8, 0)], 0),                            # full: the clock starts
    ([(0, 8, 0), (1, 8, 0)], 0),                 # still full: the clock keeps its start
    ([(0, 8, 0), (1, 7, 0), (2, 8, 0)], 0),      # one message out, one in: still backed up
    ([(0, 8, 0), (1, 5, 0)], 0),                 # above half: not drained yet
    ([(0, 8, 0), (1, 4, 0)], None),              # drained to half: a burst that was absorbed
    ([(0, 8, 0), (1, 0, 0), (2, 8, 0)], 2),      # a new burst starts a new clock
])
def test_observe_tracks_how_long_the_queue_stays_backed_up(samples, full_since):
    assert history(*samples).full_since == full_since


@pytest.mark.parametrize("samples, over_since", [
    ([(0, 0, BOUND)], None),                              # at the bound is fine
    ([(0, 0, BOUND + 1)], 0),
    ([(0, 0, BOUND + 1), (1, 0, 5 * BOUND)], 0),
    ([(0, 0, BOUND + 1), (1, 0, 10), (2, 0, BOUND + 1)], 2),  # it went below: a new clock
])
def test_observe_tracks_how_long_the_buffer_stays_above_the_bound(samples, over_since):
    assert history(*samples).over_since == over_since


def test_observe_returns_a_new_history():
    before = Backlog()
    after = step(before, CAP, now=5.0)
    assert before == Backlog() and after == Backlog(full_since=5.0)


@pytest.mark.parametrize("backlog, load, now, verdict", [
    (Backlog(), Load(), 100.0, Verdict.KEEPING_UP),
    (Backlog(full_since=0.0), Load(8, 800), 0.5, Verdict.KEEPING_UP),   # a burst, within the grace
    (Backlog(full_since=0.0), Load(8, 800), 1.0, Verdict.KEEPING_UP),   # exactly the grace: not longer
    (Backlog(full_since=0.0), Load(8, 800), 1.01, Verdict.QUEUE_FULL),
    (Backlog(over_since=0.0), Load(buffered=5000), 0.9, Verdict.KEEPING_UP),
    (Backlog(over_since=0.0), Load(buffered=5000), 1.5, Verdict.BUFFER_FULL),
    # both: the queue's own clock decides, so a stalled client gets one stable verdict
    (Backlog(full_since=0.8, over_since=0.0), Load(8, 800, 5000), 1.5, Verdict.KEEPING_UP),
    (Backlog(full_since=0.8, over_since=0.0), Load(8, 800, 5000), 1.9, Verdict.QUEUE_FULL),
    # more bytes than max_bytes: at once, whatever the clock says (the server's memory)
    (Backlog(), Load(2, 10_001), 0.0, Verdict.QUEUE_FULL),
    (Backlog(), Load(2, 10_000), 0.0, Verdict.KEEPING_UP),
    (Backlog(), Load(1, 50_000), 0.0, Verdict.KEEPING_UP),  # one big message always fits
])
def test_judge(backlog, load, now, verdict):
    assert judge(backlog, load, now, RULE) is verdict


def test_a_burst_drained_in_time_is_never_slow_and_a_trickle_is():
    burst = Backlog()
    for t in range(0, 50):  # 12 messages at a time (more than the queue size), drained in between
        queued = 12 if t % 2 == 0 else 0
        burst = step(burst, queued, now=t * 0.1)
        assert judge(burst, Load(queued, queued * 100), t * 0.1, RULE) is Verdict.KEEPING_UP
    trickle = Backlog()     # one message out, one in: never below half
    verdicts = []
    for t in range(0, 20):
        queued = CAP - t % 2
        trickle = step(trickle, queued, now=t * 0.1)
        verdicts.append(judge(trickle, Load(queued, queued * 100), t * 0.1, RULE))
    assert verdicts.index(Verdict.QUEUE_FULL) == 11  # first moment past 1.0 s


def test_verdicts_give_clear_close_reasons():
    assert Verdict.QUEUE_FULL.close_reason == "too slow: send queue full"
    assert Verdict.BUFFER_FULL.close_reason == "too slow: write buffer full"
    assert all(len(v.close_reason.encode()) <= 123 for v in Verdict)  # fits a close frame


@pytest.mark.parametrize("kwargs, message", [
    ({"queue_size": 0}, "queue_size must be at least 1"),
    ({"grace": 0}, "grace must be > 0"),
    ({"grace": -1}, "grace must be > 0"),
    ({"max_buffered": -1}, "max_bytes and max_buffered must be >= 0"),
    ({"max_bytes": -1}, "max_bytes and max_buffered must be >= 0"),
])
def test_slow_rule_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SlowRule(**kwargs)


def test_close_within_aborts_a_close_that_never_ends():
    aborted = []

    async def never():
        await asyncio.sleep(3600)

    async def quick():
        await asyncio.sleep(0)

    async def main():
        t0 = time.perf_counter()
        stuck = await close_within(never(), 0.1, lambda: aborted.append("stuck"))
        elapsed = time.perf_counter() - t0
        clean = await close_within(quick(), 0.1, lambda: aborted.append("clean"))
        return stuck, elapsed, clean

    stuck, elapsed, clean = asyncio.run(main())
    assert (stuck, clean) == (False, True)
    assert elapsed < 1.0
    assert aborted == ["stuck"]


def test_stalled_reader_refuses_a_server_that_does_not_upgrade():
    async def http_only(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(http_only, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ConnectionError, match="handshake refused: HTTP/1.1 404"):
                await stalled_reader("127.0.0.1", port, timeout=2)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(asyncio.wait_for(main(), 10))
