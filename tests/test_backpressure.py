"""Backpressure: the queue policies alone (course.wire.backpressure), then live in the fanout.

Live: a price server (course.measure.backpressure.PriceServer, on course.net.fanout) with one
healthy reading client and one stalled reader (a real socket that never reads), for each
policy.  The healthy client always gets its prices; the stalled one is dropped, or kept with a
bounded queue, or kept with the latest price per symbol, or (unbounded) piles up.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from course.measure.backpressure import (SYMBOLS, BackpressureResult, PriceServer, backpressure_table,
                                         plot_rss, rss_kib)
from course.net.fanout import stalled_reader
from course.wire.backpressure import Decision, Policy, SendQueue

# --- the policies, pure -----------------------------------------------------------------------


def test_unbounded_keeps_everything():
    q = SendQueue(Policy.UNBOUNDED, max_items=2)
    assert [q.offer(i, 10) for i in range(5)] == [Decision.QUEUED] * 5
    assert len(q) == 5 and q.bytes == 50 and q.over_bound() and q.discarded == 0


def test_drop_client_queues_but_says_over_bound():
    q = SendQueue(Policy.DROP_CLIENT, max_items=2, max_bytes=1000)
    assert [q.offer(i, 10) for i in range(3)] == [Decision.QUEUED, Decision.QUEUED, Decision.OVER_BOUND]
    assert q.items() == [0, 1, 2]
    q2 = SendQueue(Policy.DROP_CLIENT, max_items=100, max_bytes=15)
    assert q2.offer("a", 10) is Decision.QUEUED and q2.offer("b", 10) is Decision.OVER_BOUND


def test_one_message_fits_whatever_its_size():
    for policy in Policy:
        q = SendQueue(policy, max_items=4, max_bytes=10)
        assert q.offer("huge", 1000) is Decision.QUEUED and len(q) == 1


def test_drop_oldest_keeps_the_newest():
    q = SendQueue(Policy.DROP_OLDEST, max_items=3, max_bytes=10_000)
    decisions = [q.offer(i, 10) for i in range(6)]
    assert decisions == [Decision.QUEUED] * 3 + [Decision.DROPPED_OLDEST] * 3
    assert q.items() == [3, 4, 5] and q.bytes == 30 and q.discarded == 3
    assert q.offer("big", 9_990) is Decision.DROPPED_OLDEST  # the byte bound: 30 + 9990 > 10000
    assert q.items() == [5, "big"] and q.bytes == 10_000


def test_coalesce_keeps_the_latest_value_per_key_in_its_place():
    q = SendQueue(Policy.COALESCE, max_items=10)
    assert q.offer("AAPL 1", 6, "AAPL") is Decision.QUEUED
    assert q.offer("MSFT 1", 6, "MSFT") is Decision.QUEUED
    assert q.offer("AAPL 2", 6, "AAPL") is Decision.REPLACED
    assert q.items() == ["AAPL 2", "MSFT 1"] and q.bytes == 12 and q.discarded == 1  # newest first:
    # across keys the queue is not in publication order (a reader tracks each key, or the highest seq)
    assert q.pop() == ("AAPL 2", 6)
    assert q.offer("AAPL 3", 6, "AAPL") is Decision.QUEUED   # sent already: a new slot, at the end
    assert q.items() == ["MSFT 1", "AAPL 3"]


def test_coalesce_without_a_key_or_past_the_bound_drops_the_oldest():
    q = SendQueue(Policy.COALESCE, max_items=2)
    assert q.offer("news", 4) is Decision.QUEUED and q.offer("news", 4) is Decision.QUEUED
    assert q.offer("AAPL", 4, "AAPL") is Decision.DROPPED_OLDEST
    assert q.items() == ["news", "AAPL"]


def test_pop_clear_and_bad_arguments():
    q = SendQueue(Policy.DROP_OLDEST)
    with pytest.raises(IndexError):
        q.pop()
    q.offer("a", 1)
    q.clear()
    assert len(q) == 0 and q.bytes == 0 and q.discarded == 1
    with pytest.raises(ValueError):
        q.offer("a", -1)
    with pytest.raises(ValueError):
        SendQueue(max_items=0)
    with pytest.raises(ValueError):
        Policy("drop everything")


def test_rss_of_this_process():
    import os
    assert rss_kib(os.getpid()) > 1000


def test_the_table_and_the_plot_say_what_became_of_the_stalled_client():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    results = [BackpressureResult(Policy.UNBOUNDED, rss=[(0.0, 40.0), (1.0, 44.0)], published=10,
                                  slow_queued=9, slow_queued_bytes=9 * 4096, healthy_received=[10, 10],
                                  healthy_p50_ms=1.0, healthy_p99_ms=2.0),
               BackpressureResult(Policy.DROP_CLIENT, rss=[(0.0, 40.0), (1.0, 40.0)], published=10,
                                  slow_dropped=True, healthy_received=[10, 9], healthy_dropped=1),
               BackpressureResult(Policy.COALESCE, rss=[(0.0, 40.0)], slow_queued=8, discarded=3)]
    assert results[0].rss_growth_mib == 4.0
    table = backpressure_table(results).splitlines()
    assert "+4.0 MiB" in table[1] and "9 queued" in table[1] and "10/10" in table[1]
    assert "dropped (1008)" in table[2] and "9/10, 1 dropped" in table[2]
    assert "latest price per symbol" in table[3] and "3 discarded" in table[3]
    fig = plot_rss(results)
    try:
        assert len(fig.axes[0].lines) == 3
    finally:
        plt.close(fig)


# --- live: a healthy client and a stalled one, for each policy -----------------------------------

PRICES = 2000      # 8 MB of 4 KiB prices: more than the kernel's socket buffers absorb
SIZE = 4096


async def _live(policy: Policy):
    received: list[dict] = []
    async with await PriceServer(policy, queue_size=16, grace=0.2).start() as server:
        async with connect(server.url, ping_interval=None, max_size=None) as healthy:
            stalled = await stalled_reader("127.0.0.1", server.port)
            stalled_name = "{}:{}".format(*stalled.getsockname()[:2])
            try:
                async with asyncio.timeout(20):
                    while len(server.fanout) < 2:
                        await asyncio.sleep(0.01)
                    stalled_outbox = next(o for o in server.fanout.clients.values()
                                          if o.name == stalled_name)

                    async def read() -> None:
                        async for text in healthy:
                            received.append(json.loads(text))
                            if received[-1]["seq"] == PRICES:
                                return
                    reader = asyncio.create_task(read())
                    for _ in range(PRICES // 8):
                        server.publish(8, SIZE)
                        await asyncio.sleep(0.001)
                    await reader
                    if policy is Policy.DROP_CLIENT:   # its queue stays full: dropped after grace
                        while stalled_name not in server.fanout.dropped:
                            await asyncio.sleep(0.05)
                    pending = [json.loads(text) for text in stalled_outbox.pending()]
                    names = [o.name for o in server.fanout.clients.values()]
                    return (list(server.fanout.dropped), names, stalled_name, stalled_outbox.closed,
                            stalled_outbox.discarded, pending, received)
            finally:
                stalled.close()


@pytest.mark.parametrize("policy", list(Policy), ids=lambda p: p.name)
def test_a_healthy_client_keeps_receiving_beside_a_stalled_one(policy):
    dropped, connected, stalled_name, closed, discarded, pending, received = asyncio.run(_live(policy))
    seqs = [m["seq"] for m in received]
    assert len(seqs) == len(set(seqs)) and max(seqs) == PRICES    # no duplicate, to the end
    for symbol in SYMBOLS:   # each symbol in order; under COALESCE a replaced price keeps its
        own = [m["seq"] for m in received if m["symbol"] == symbol]  # slot's place, so a lagging
        assert own == sorted(own)                                  # client may get 766 before 765
    if policy is Policy.COALESCE:   # it may skip a price its writer had not sent yet, never the latest
        last = {m["symbol"]: m["seq"] for m in received}
        assert last == {s: PRICES - (PRICES - 1 - i) % len(SYMBOLS) for i, s in enumerate(SYMBOLS)}
    else:
        assert seqs == list(range(1, PRICES + 1))                # every price
    if policy is Policy.DROP_CLIENT:
        assert dropped == [stalled_name] and closed and len(connected) == 1  # the healthy one
        return
    assert dropped == [] and len(connected) == 2 and stalled_name in connected
    if policy is Policy.DROP_OLDEST:
        assert len(pending) == 16 and discarded > 0
        assert [m["seq"] for m in pending] == list(range(PRICES - 15, PRICES + 1))  # the newest 16
    elif policy is Policy.COALESCE:
        assert len(pending) <= len(SYMBOLS) and discarded > 0
        assert len({m["symbol"] for m in pending}) == len(pending)          # one per symbol
        latest = {m["symbol"]: m["seq"] for m in received}
        assert all(m["seq"] == latest[m["symbol"]] for m in pending)        # and it is the latest
    else:  # UNBOUNDED: everything the socket did not absorb waits in the queue
        assert len(pending) > 16 and discarded == 0
        assert [m["seq"] for m in pending][-1] == PRICES
