"""Chapter 6: the fault relay (clean and abrupt cuts, blackholes, latency, seeded plans)
and dead peers: nobody notices a blackhole without heartbeats; ping/pong and the channel
heartbeat do, with the documented close codes.  Assertions are on outcomes, not timings.
"""

from __future__ import annotations

import asyncio

import pytest

from course.measure.dead_peer import channels_blackhole, websockets_blackhole
from course.net.relay import Applied, Fault, FaultPlan, Step, start_relay


def run(make_coro, timeout: float = 10):
    """Run a test coroutine in a fresh loop, bounded."""
    return asyncio.run(asyncio.wait_for(make_coro(), timeout))


async def echo_server():
    """A TCP echo server that records how each connection ended."""
    ends: list[str] = []

    async def handle(reader, writer):
        try:
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
            ends.append("eof")
        except ConnectionResetError:
            ends.append("reset")
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], ends


# --- the plan (pure) ---------------------------------------------------------------------------

def test_a_seeded_plan_reproduces_and_uses_every_fault():
    plan = FaultPlan.random(7, cuts=20, span=10_000)
    assert plan == FaultPlan.random(7, cuts=20, span=10_000)
    assert plan != FaultPlan.random(8, cuts=20, span=10_000)
    assert plan.counts() == {Fault.CLOSE: 7, Fault.RESET: 7, Fault.BLACKHOLE: 6}
    marks = [step.after for step in plan.steps]
    assert marks == sorted(marks) and all(500 <= m <= 9500 and isinstance(m, int) for m in marks)
    assert FaultPlan.random(1, cuts=0, span=5).steps == ()
    only = FaultPlan.random(1, cuts=4, span=1.0, faults=[Fault.RESET])
    assert {s.fault for s in only.steps} == {Fault.RESET} and isinstance(only.steps[0].after, float)
    for bad in (dict(cuts=-1, span=5), dict(cuts=1, span=0), dict(cuts=1, span=5, faults=()),
                dict(cuts=1, span=5, margin=0.5)):
        with pytest.raises(ValueError):
            FaultPlan.random(1, **bad)


# --- the faults, on raw TCP --------------------------------------------------------------------

def test_close_reset_and_blackhole_end_a_connection_three_ways():
    async def scenario():
        server, port, ends = await echo_server()
        relay = await start_relay("127.0.0.1", port)
        try:
            seen = {}
            for fault in Fault:
                reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
                writer.write(b"ping")
                assert await asyncio.wait_for(reader.readexactly(4), 2) == b"ping"
                link = relay.open_links[-1]
                if fault is Fault.RESET:
                    await relay.cut(link.number, fault)
                else:
                    await link.cut(fault)
                assert link.fault is fault
                writer.write(b"more")
                try:
                    data = await asyncio.wait_for(reader.read(100), 0.3)
                    seen[fault] = "eof" if data == b"" else data
                except ConnectionResetError:
                    seen[fault] = "reset"
                except TimeoutError:
                    seen[fault] = "nothing"   # no byte, no FIN, no RST: half-open
                writer.transport.abort()
            assert seen == {Fault.CLOSE: "eof", Fault.RESET: "reset", Fault.BLACKHOLE: "nothing"}
            await asyncio.sleep(0.05)
            assert ends[:2] == ["eof", "reset"]          # the server saw each end the same way
            blackholed = relay.links[-1]
            assert blackholed.discarded == 4 and blackholed.bytes_up == 4   # "more" went nowhere
            with pytest.raises(KeyError):
                await relay.cut(99, Fault.CLOSE)
        finally:
            relay.close()
            await relay.wait_closed()
            server.close()
            await server.wait_closed()
    run(scenario)


def test_a_blackhole_keeps_the_server_leg_open_and_silent():
    async def scenario():
        server, port, ends = await echo_server()
        relay = await start_relay("127.0.0.1", port)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            writer.write(b"a")
            await reader.readexactly(1)
            assert await relay.cut_all(Fault.BLACKHOLE) == [1]
            assert await relay.cut_all(Fault.CLOSE) == []    # a cut link is not cut again
            writer.write_eof()                               # even our FIN does not go through
            await asyncio.sleep(0.3)
            assert ends == [] and relay.links[0].open
            writer.transport.abort()
        finally:
            relay.close()
            await relay.wait_closed()
            server.close()
            await server.wait_closed()
        assert ends == ["eof"]   # the relay stopping closes the server leg at last
    run(scenario)


def test_latency_delays_each_chunk_and_keeps_order():
    async def scenario():
        server, port, _ = await echo_server()
        relay = await start_relay("127.0.0.1", port, latency=(0.05, 0.0))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i in range(20):
                writer.write(b"%02d" % i)
                await asyncio.sleep(0.002)
            got = await asyncio.wait_for(reader.readexactly(40), 3)
            assert got == b"".join(b"%02d" % i for i in range(20))
            assert loop.time() - start >= 0.05                  # a lower bound, never flaky
            assert relay.links[0].latency == (0.05, 0.0)
            writer.close()
        finally:
            relay.close()
            await relay.wait_closed()
            server.close()
            await server.wait_closed()
        with pytest.raises(ValueError):
            await start_relay("127.0.0.1", port, latency=-1)
    run(scenario)


def test_run_plan_cuts_at_each_mark_in_order():
    async def scenario():
        server, port, _ = await echo_server()
        relay = await start_relay("127.0.0.1", port)
        sent = [0]
        connections = []
        try:
            async def client():
                while sent[0] < 30:
                    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
                    connections.append(writer)
                    try:
                        while sent[0] < 30:
                            writer.write(b"x")
                            await asyncio.wait_for(reader.readexactly(1), 0.2)
                            sent[0] += 1
                            await asyncio.sleep(0.005)
                    except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
                        writer.transport.abort()

            async def settle():  # the client is back: a new link, not cut, carries bytes
                while not any(link.fault is None and link.bytes_up for link in relay.open_links):
                    await asyncio.sleep(0.005)

            plan = FaultPlan(None, (Step(5, Fault.CLOSE), Step(10, Fault.RESET),
                                    Step(20, Fault.BLACKHOLE)))
            task = asyncio.create_task(client())
            applied = await relay.run_plan(plan, lambda: sent[0], settle=settle)
            await task
        finally:
            relay.close()
            await relay.wait_closed()
            server.close()
            await server.wait_closed()
        assert [a.step for a in applied] == list(plan.steps)
        assert all(isinstance(a, Applied) for a in applied)
        assert [a.links for a in applied] == [(1,), (2,), (3,)]
        assert [a.progress >= a.step.after for a in applied] == [True] * 3
        assert [link.fault for link in relay.links] == [Fault.CLOSE, Fault.RESET, Fault.BLACKHOLE, None]
    run(scenario)


# --- dead peers --------------------------------------------------------------------------------

def test_without_heartbeats_nobody_notices_a_blackhole():
    async def scenario():
        return (await websockets_blackhole(None, None, wait=0.5),
                await channels_blackhole(None, None, wait=0.5))
    for ends in run(scenario):
        assert [(e.side, e.seconds, e.reason) for e in ends] == [
            ("client", None, "still open"), ("server", None, "still open")]


def test_websocket_ping_pong_detects_a_blackhole_on_both_ends():
    client, server = run(lambda: websockets_blackhole(0.1, 0.1, wait=3))
    for end in (client, server):
        assert end.seconds is not None
        assert (end.code, end.reason) == (1011, "keepalive ping timeout")


def test_the_channel_heartbeat_detects_a_blackhole_on_both_ends():
    client, server = run(lambda: channels_blackhole(0.1, 0.1, wait=3))
    assert client.seconds is not None and client.reason == "heartbeat timeout"
    assert server.seconds is not None and (server.code, server.reason) == (1000, "heartbeat timeout")
