"""Chapter 6: resume without loss, exactly once in effect.

The rules (course.wire.resume, pure), the channel server's replay and deduplication, the
resuming Python client, the official phoenix JS client, and the measurement: 10,000
messages through 20 forced disconnects of every kind, 0 lost, 0 duplicated, in order,
both ways, with python-socketio's count in the same run.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from course.measure.resume import Direction, count, run_channels, run_socketio, table
from course.net.channels import start_channels
from course.net.channels_client import ChannelClient, ResumingClient
from course.net.relay import Fault, FaultPlan, start_relay
from course.wire.channels import ChannelSession, JoinRoom, Send
from course.wire.resume import (Deduplicator, Outbox, Receiver, Replay, Resync, Seen, TopicLog,
                                classify, message_id, resume_point)

ROOT = Path(__file__).resolve().parent.parent


def run(make_coro, timeout: float = 10):
    """Run a test coroutine in a fresh loop, bounded."""
    return asyncio.run(asyncio.wait_for(make_coro(), timeout))


# --- the pure rules ----------------------------------------------------------------------------

@pytest.mark.parametrize("last_seen,seq,expected", [
    (0, 1, Seen.DELIVER), (4, 5, Seen.DELIVER), (4, 4, Seen.DUPLICATE), (4, 1, Seen.DUPLICATE),
    (4, 6, Seen.GAP), (0, 2, Seen.GAP), (0, 0, Seen.DUPLICATE)])
def test_classify(last_seen, seq, expected):
    assert classify(last_seen, seq) is expected


def test_topic_log_replays_the_gap_or_says_resync():
    log = TopicLog(capacity=3)
    assert log.since(0) == Replay([]) and log.first_seq == 1
    assert [log.append(f"m{i}") for i in range(1, 6)] == [1, 2, 3, 4, 5]
    assert len(log) == 3 and log.first_seq == 3 and log.newest.seq == 5
    assert [(e.seq, e.payload) for e in log.since(2).entries] == [(3, "m3"), (4, "m4"), (5, "m5")]
    assert log.since(4).entries[0].payload == "m5" and log.since(5) == Replay([])
    assert log.since(1) == Resync(5, "too old")
    assert log.since(9) == Resync(5, "ahead of the log")
    with pytest.raises(ValueError):
        log.since(-1)
    with pytest.raises(ValueError):
        TopicLog(0)


def test_receiver_delivers_once_in_order_and_stops_at_a_gap():
    receiver = Receiver()
    assert [receiver.receive(s) for s in (1, 2, 2, 1, 4, 3)] == [
        Seen.DELIVER, Seen.DELIVER, Seen.DUPLICATE, Seen.DUPLICATE, Seen.GAP, Seen.DELIVER]
    assert (receiver.last_seen, receiver.duplicates, receiver.gaps) == (3, 2, 1)
    receiver.resync(40)
    assert receiver.receive(41) is Seen.DELIVER


def test_outbox_keeps_until_acknowledged_in_order():
    outbox = Outbox("c1")
    ids = [outbox.add({"body": b}) for b in "abc"]
    assert ids == ["c1-1", "c1-2", "c1-3"]
    assert outbox.ack("c1-2") and not outbox.ack("c1-2") and outbox.acked == 1
    assert outbox.unacked() == [("c1-1", {"body": "a"}), ("c1-3", {"body": "c"})]
    assert len(outbox) == 2


def test_deduplicator_answers_repeats_and_stays_bounded():
    dedup = Deduplicator(per_client=2, clients=2)
    assert dedup.seen("ada", "x") == (False, None)
    dedup.remember("ada", "x", {"id": 1})
    assert dedup.seen("ada", "x") == (True, {"id": 1}) and dedup.repeats == 1
    assert dedup.seen("bob", "x") == (False, None)            # per client
    dedup.remember("ada", "y", 2)
    dedup.remember("ada", "z", 3)                             # "x" is forgotten: bound 2
    assert dedup.seen("ada", "x") == (False, None) and len(dedup) == 2
    dedup.remember("bob", "x", 4)
    dedup.remember("cy", "x", 5)                              # ada, least recent, is forgotten
    assert dedup.seen("ada", "z") == (False, None) and len(dedup) == 2
    with pytest.raises(ValueError):
        Deduplicator(0)


def test_ids_and_resume_points_are_checked():
    assert message_id({"body": "hi"}) is None and message_id({"id": "a-1"}) == "a-1"
    for bad in (7, "", "x" * 65, None.__class__):
        with pytest.raises(ValueError):
            message_id({"id": bad})
    assert resume_point({"name": "ada"}) is None
    assert resume_point({"last_seq": 0}) == (0, None)
    assert resume_point({"last_seq": 5, "client": "c1"}) == (5, "c1")
    for bad in ({"last_seq": -1}, {"last_seq": True}, {"last_seq": "3"}, {"last_seq": 1.5},
                {"last_seq": 1, "client": 3}, {"last_seq": 1, "client": ""}):
        with pytest.raises(ValueError):
            resume_point(bad)


def test_the_session_passes_the_resume_point_on_and_refuses_a_bad_one():
    session = ChannelSession()
    [join] = session.receive('["1","1","room:lobby","phx_join",{"name":"ada","last_seq":3,"client":"c"}]')
    assert isinstance(join, JoinRoom) and join.resume == (3, "c")
    [plain] = session.receive('["2","2","room:x","phx_join",{"name":"ada"}]')
    assert plain.resume is None
    [refused] = session.receive('["3","3","room:y","phx_join",{"name":"ada","last_seq":-2}]')
    assert isinstance(refused, Send) and refused.message.payload["response"]["reason"] == "bad payload"
    assert "room:y" not in session.joined


def test_count_tallies_loss_duplicates_and_order():
    assert count(["a", "b", "c"], ["a", "b", "c"]) == Direction(3, 3, 0, 0, True)
    assert count(["a", "b", "c"], ["a", "c", "c"]) == Direction(3, 2, 1, 1, True)
    assert count(["a", "b", "c"], ["b", "a", "c"]).in_order is False


# --- the server: replay, resync, deduplication ------------------------------------------------

def test_server_replays_the_gap_before_live_messages_and_says_resync_when_too_old():
    async def scenario():
        async with await start_channels(log_size=5) as server:
            for i in range(1, 4):
                server.post("lobby", f"m{i}")
            async with await ChannelClient.connect(server.url, heartbeat_interval=None) as client:
                reply = await client.join("room:lobby", {"name": "ada", "last_seq": 1})
                assert reply["status"] == "ok"
                assert reply["response"]["resume"] == "replay" and reply["response"]["seq"] == 3
                server.post("lobby", "m4")  # live, after the replay
                got = []
                while len(got) < 3:
                    message = await client.next_event()
                    if message.event == "new_msg":
                        got.append((message.payload["seq"], message.payload["body"]))
                assert got == [(2, "m2"), (3, "m3"), (4, "m4")]

                for i in range(5, 12):
                    server.post("lobby", f"m{i}")
                reply = await client.join("room:lobby", {"name": "ada", "last_seq": 2})
                assert reply["response"]["resume"] == "resync"
                assert reply["response"]["seq"] == 11 and reply["response"]["reason"] == "too old"
                reply = await client.join("room:lobby", {"name": "ada", "last_seq": 99})
                assert reply["response"]["reason"] == "ahead of the log"
                refused = await client.join("room:other", {"name": "ada", "last_seq": "x"})
                assert refused["status"] == "error" and refused["response"]["reason"] == "bad payload"
                assert (await client.join("room:other", {"name": "ada"}))["status"] == "ok"
    run(scenario)


def test_a_push_sent_twice_with_one_id_is_posted_once_and_acknowledged_twice():
    async def scenario():
        async with await start_channels() as server:
            async with await ChannelClient.connect(server.url, heartbeat_interval=None) as ada, \
                    await ChannelClient.connect(server.url, heartbeat_interval=None) as again:
                await ada.join("room:lobby", {"name": "ada", "last_seq": 0, "client": "c1"})
                first = await ada.push("room:lobby", "new_msg", {"body": "hi", "id": "c1-1"})
                assert first == {"status": "ok", "response": {"id": 1, "seq": 1}}
                # the same client on a new connection re-sends it (its ack was lost)
                await again.join("room:lobby", {"name": "ada", "last_seq": 1, "client": "c1"})
                repeat = await again.push("room:lobby", "new_msg", {"body": "hi", "id": "c1-1"})
                assert repeat["response"] == {"id": 1, "seq": 1, "duplicate": True}
                assert [m["body"] for m in server.rooms.room("lobby").history] == ["hi"]
                bad = await ada.push("room:lobby", "new_msg", {"body": "hi", "id": 5})
                assert bad["status"] == "error" and bad["response"]["reason"] == "bad payload"
                assert server.dedup.repeats == 1
    run(scenario)


def test_a_nickname_is_not_a_dedup_key():
    """Mallory joins under Ada's public nickname and sends first the id Ada will use: Ada's
    message is still posted. Without "client", ids are deduplicated per connection."""
    async def scenario():
        async with await start_channels() as server:
            async with await ChannelClient.connect(server.url, heartbeat_interval=None) as ada, \
                    await ChannelClient.connect(server.url, heartbeat_interval=None) as mallory:
                await ada.join("room:lobby", {"name": "ada", "last_seq": 0})
                await mallory.join("room:lobby", {"name": "ada", "last_seq": 0})
                spoof = await mallory.push("room:lobby", "new_msg", {"body": "spoof", "id": "ada-1"})
                real = await ada.push("room:lobby", "new_msg", {"body": "real", "id": "ada-1"})
                assert "duplicate" not in spoof["response"] and "duplicate" not in real["response"]
                again = await ada.push("room:lobby", "new_msg", {"body": "real", "id": "ada-1"})
                assert again["response"] == {**real["response"], "duplicate": True}  # same connection
                # nor a plain join (no last_seq): its ids are its connection's own
                await mallory.join("room:den", {"name": "bob"})
                await ada.join("room:den", {"name": "bob"})
                for client in (mallory, ada):
                    reply = await client.push("room:den", "new_msg", {"body": "x", "id": "bob-1"})
                    assert "duplicate" not in reply["response"]
                assert [m["body"] for m in server.rooms.room("lobby").history] == ["spoof", "real"]
                assert len(server.rooms.room("den").history) == 2
    run(scenario)


def test_a_plain_join_still_gets_chapter_5_payloads():
    async def scenario():
        async with await start_channels() as server:
            async with await ChannelClient.connect(server.url, heartbeat_interval=None) as bob:
                reply = await bob.join("room:lobby", {"name": "bob"})
                assert set(reply["response"]) == {"history"}
                server.post("lobby", "hello")
                message = await bob.next_event()
                while message.event != "new_msg":
                    message = await bob.next_event()
                assert message.payload == {"id": 1, "name": "kernel", "body": "hello"}
    run(scenario)


# --- the resuming Python client through the fault relay ---------------------------------------

def test_resuming_client_comes_back_after_each_kind_of_cut():
    async def scenario():
        async with await start_channels(heartbeat_timeout=0.3, action_cable=False,
                                        socket_io=False) as server:
            relay = await start_relay("127.0.0.1", server.port)
            url = f"ws://127.0.0.1:{relay.port}/socket/websocket"
            try:
                async with ResumingClient(url, "room:lobby", "ada", heartbeat_interval=0.1,
                                          backoff_base=0.01, seed=1) as ada:
                    for round_, fault in enumerate(Fault):
                        joins = ada.joins
                        await relay.cut_all(fault)
                        server.post("lobby", f"while away {round_}")   # missed: replayed
                        ada.send(f"sent while away {round_}")          # re-sent: deduplicated
                        await ada.rejoined(joins, timeout=5)
                    await ada.flush()
                    await ada.wait_for_seq(6)
                    bodies = [m["body"] for m in ada.received]
                    assert sorted(bodies) == sorted([f"while away {i}" for i in range(3)]
                                                    + [f"sent while away {i}" for i in range(3)])
                    assert [m["seq"] for m in ada.received] == [1, 2, 3, 4, 5, 6]
                    assert ada.connections >= 4 and ada.resyncs == 0
                    assert [m["body"] for m in server.rooms.room("lobby").history] == bodies
            finally:
                relay.close()
                await relay.wait_closed()
    run(scenario, timeout=20)


# --- the measurement (the "done when") ------------------------------------------------

def test_ten_thousand_messages_through_twenty_cuts_lose_and_duplicate_nothing():
    ours = run(lambda: run_channels(messages=10_000, cuts=20, seed=7), timeout=90)
    assert ours.cuts == {"close": 7, "reset": 7, "blackhole": 6}
    assert ours.up == Direction(10_000, 10_000, 0, 0, True)
    assert ours.down == Direction(20_000, 20_000, 0, 0, True)
    assert ours.exact and ours.notes["connections"] >= 2 + 2 * 20
    # python-socketio, same relay and kind of plan, lighter: measured and reported, not judged
    theirs = run(lambda: run_socketio(messages=600, cuts=3, seed=7, burst=20, pause=0.01,
                                      reconnection_delay=0.05), timeout=60)
    assert theirs.cuts == {"close": 1, "reset": 1, "blackhole": 1}
    assert theirs.up.sent == 600 and theirs.up.lost + theirs.up.delivered == 600
    assert theirs.down.sent == 2 * theirs.up.delivered
    print(table([ours, theirs]))


# --- the official phoenix client --------------------------------------------------------------

def test_official_phoenix_client_resumes_through_the_fault_relay(node_modules):
    count = 400  # each way

    async def scenario():
        server = await start_channels(heartbeat_timeout=0.3, log_size=10_000, queue_size=1024,
                                      action_cable=False, socket_io=False)
        relay = await start_relay("127.0.0.1", server.port)
        room = server.rooms.room("lobby")
        process = await asyncio.create_subprocess_exec(
            "node", str(ROOT / "tests/js/phoenix_resume.js"), f"ws://127.0.0.1:{relay.port}/socket",
            "node", str(count), str(2 * count),
            stdout=asyncio.subprocess.PIPE, env={**os.environ, "NODE_PATH": str(node_modules)})
        lines: list[dict] = []
        joins = [0]

        async def read() -> None:
            while raw := await process.stdout.readline():
                line = json.loads(raw)
                lines.append(line)
                if line["event"] == "joined":
                    joins[0] = line["joins"]

        reader = asyncio.create_task(read())
        try:
            async with asyncio.timeout(5):
                while not joins[0]:
                    await asyncio.sleep(0.01)

            async def settle() -> None:
                before = joins[0]
                while joins[0] <= before:
                    await asyncio.sleep(0.005)

            async def kernel_posts() -> None:
                for i in range(count):
                    server.post("lobby", f"kernel-{i}")
                    if i % 20 == 19:
                        await asyncio.sleep(0.02)

            plan = FaultPlan.random(3, cuts=3, span=2 * count)  # one of each kind
            poster = asyncio.create_task(kernel_posts())
            applied = await relay.run_plan(plan, lambda: room.log.last_seq, settle=settle)
            await poster
            await asyncio.wait_for(reader, 30)
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
            relay.close()
            server.close()
            await relay.wait_closed()
            await server.wait_closed()
        return lines, applied, [m["body"] for m in room.history], room

    lines, applied, _, room = run(scenario, timeout=60)
    done = lines[-1]
    assert done["event"] == "done", lines[-3:]
    assert sorted(a.step.fault.value for a in applied) == ["blackhole", "close", "reset"]
    logged = [entry.payload["body"] for entry in room.log.since(0).entries]
    mine = [body for body in logged if body.startswith("node-")]
    assert mine == [f"node-{i}" for i in range(count)]           # up: once each, in order
    assert done["delivered"] == logged                           # down: once each, in order
    assert done["gaps"] == 0 and done["resyncs"] == 0 and done["joins"] >= 4  # 3 cuts (a starved machine may add one)
