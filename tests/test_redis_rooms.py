"""Chapter 5's rooms across processes: two ``python -m course.net.redis_rooms`` behind one real Redis.

A Phoenix client on process one and a Socket.IO client on process two are in the same room:
messages and typing cross; presence stays per process (documented in the module).
"""

from __future__ import annotations

import asyncio

import socketio

from course.net.channels import Rooms
from course.net.channels_client import ChannelClient
from course.net.processes import spawn
from course.net.redis_rooms import RedisRooms
from course.net.redis_server import start_redis


def run(make_coro, timeout: float = 20):
    return asyncio.run(asyncio.wait_for(make_coro(), timeout))


async def next_new_msg(client: ChannelClient) -> dict:
    while True:
        message = await client.next_event(timeout=5)
        if message.event == "new_msg":
            return message.payload


def test_phoenix_and_socketio_clients_on_two_processes_share_a_room(redis_server):
    async def scenario():
        async with await start_redis(redis_server) as redis:
            one, two = await asyncio.gather(*(spawn("course.net.redis_rooms", "--port", "0", "--redis", redis.url)
                                              for _ in range(2)))
            sio = socketio.AsyncClient(reconnection=False)
            events: list = []
            for name in ("new_msg", "typing"):
                sio.on(name, lambda payload, name=name: events.append((name, payload)))
            try:
                ada = await ChannelClient.connect(one.url, heartbeat_interval=None)
                assert (await ada.join("room:lobby", {"name": "ada"}))["status"] == "ok"
                await sio.connect(f"http://127.0.0.1:{two.port}", wait_timeout=5)
                assert (await sio.call("join", {"room": "lobby", "name": "bob"}, timeout=5))["ok"]
                await ada.push("room:lobby", "new_msg", {"body": "hi from phoenix on one"})
                assert (await next_new_msg(ada))["body"] == "hi from phoenix on one"   # local, as before
                assert (await sio.call("new_msg", {"body": "hi from socket.io on two"}, timeout=5))["ok"]
                assert (await next_new_msg(ada))["body"] == "hi from socket.io on two"
                assert (await sio.call("typing", {}, timeout=5))["ok"]
                async with asyncio.timeout(5):
                    while not any(e[0] == "new_msg" and e[1]["body"] == "hi from phoenix on one" for e in events):
                        await asyncio.sleep(0.02)
                    while True:   # bob's typing reached ada on the other process
                        message = await ada.next_event(timeout=5)
                        if message.event == "typing":
                            assert message.payload == {"name": "bob", "typing": True}
                            break
                # each message arrived once on each side (no echo back through Redis)
                bodies = [e[1]["body"] for e in events if e[0] == "new_msg"]
                assert sorted(bodies) == ["hi from phoenix on one", "hi from socket.io on two"]
                await ada.close()
            finally:
                await sio.disconnect()
                for process in (one, two):
                    process.close()
                await asyncio.gather(one.wait_closed(), two.wait_closed())

    run(scenario)


def test_in_process_backend_skips_its_own_messages_and_unhooks_on_close(redis_server):
    async def scenario():
        async with await start_redis(redis_server) as redis:
            here, there = Rooms(), Rooms()
            got_here, got_there = [], []
            a = await RedisRooms(here, redis.url).start()
            b = await RedisRooms(there, redis.url).start()
            here.room("lobby").join("k1", "ada", lambda e, p: got_here.append((e, p)))
            there.room("lobby").join("k2", "bob", lambda e, p: got_there.append((e, p)))
            here.room("lobby").say("k1", "hello")
            async with asyncio.timeout(5):
                while not any(e == "new_msg" for e, _ in got_there):
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            assert [p["body"] for e, p in got_here if e == "new_msg"] == ["hello"]
            assert [p["body"] for e, p in got_there if e == "new_msg"] == ["hello"]
            assert [m["body"] for m in there.room("lobby").history] == ["hello"]
            assert (a.published, b.received, a.received) == (1, 1, 0)
            a.close()
            await a.wait_closed()
            here.room("lobby").say("k1", "after close")   # no longer shared, and no error
            b.close()
            await b.wait_closed()

    run(scenario)
