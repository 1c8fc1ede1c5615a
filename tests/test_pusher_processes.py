"""Chapter 7: several ``python -m course.net.pusher_server`` processes behind one real Redis.

Events and whispers cross processes, ``toOthers()`` skips the sender, presence follows a
killed process, and a restarted process's client catches up from the stream.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis

from course.net.pusher_app import start_echo_app
from course.net.pusher_client import PusherClient, SubscriptionRefused
from course.net.pusher_server import KEY, SECRET, presence_key, spawn_pusher
from course.net.redis_server import start_redis
from course.wire.pusher import Member, auth_string, authorize


def run(make_coro, timeout: float = 25):
    return asyncio.run(asyncio.wait_for(make_coro(), timeout))


# --- several server processes ------------------------------------------------------------------

def test_two_processes_share_events_to_others_whispers_and_bad_signatures(redis_server):
    async def scenario():
        async with await start_redis(redis_server) as server:
            one, two = await asyncio.gather(spawn_pusher(server.url), spawn_pusher(server.url))
            app = await start_echo_app(server.url)
            try:
                ada, bob = await PusherClient.connect(one.url), await PusherClient.connect(two.url)
                for client in (ada, bob):
                    await client.subscribe("orders")
                published = await app.broadcast("orders", "OrderShipped", {"id": 1})
                assert published.receivers == 2   # two processes subscribed
                for client in (ada, bob):
                    frame = await client.next_event("OrderShipped")
                    assert (frame.channel, frame.data) == ("orders", {"id": 1})
                # toOthers(): ada's own socket is skipped, bob (other process) gets it
                await app.broadcast("orders", "OrderShipped", {"id": 2}, socket=ada.socket_id)
                await app.broadcast("orders", "OrderShipped", {"id": 3})
                assert (await bob.next_event("OrderShipped")).data == {"id": 2}
                assert (await ada.next_event("OrderShipped")).data == {"id": 3}
                # private: a forged signature is refused, the app's is accepted
                with pytest.raises(SubscriptionRefused) as refused:
                    await ada.subscribe("private-orders.1",
                                        auth=auth_string(KEY, "not-the-secret", ada.socket_id, "private-orders.1"))
                assert refused.value.code == 4009
                for client in (ada, bob):
                    await client.subscribe("private-orders.1", **authorize(KEY, SECRET, client.socket_id,
                                                                            "private-orders.1"))
                # a whisper crosses processes and skips its sender
                await ada.send("client-typing", {"name": "ada"}, "private-orders.1")
                whisper = await bob.next_event("client-typing")
                assert whisper.data == {"name": "ada"}
                await app.broadcast("private-orders.1", "Marker", {})
                await ada.next_event("Marker")
                assert not [f for f in ada.frames if f.event == "client-typing"]
                await ada.close()
                await bob.close()
            finally:
                for service in (one, two, app):
                    service.close()
                await asyncio.gather(*(s.wait_closed() for s in (one, two, app)))
            assert one.process.returncode == 0 and two.process.returncode == 0

    run(scenario, timeout=25)


def test_presence_across_processes_including_a_killed_one(redis_server):
    async def scenario():
        async with await start_redis(redis_server) as server:
            ttl = "1.0"
            one, two = await asyncio.gather(spawn_pusher(server.url, "--presence-ttl", ttl),
                                            spawn_pusher(server.url, "--presence-ttl", ttl))
            try:
                ada, bob = await PusherClient.connect(one.url), await PusherClient.connect(two.url)
                channel = "presence-room.1"

                def auth(client, user):
                    return authorize(KEY, SECRET, client.socket_id, channel, Member(user, {"name": user}))

                first = await ada.subscribe(channel, **auth(ada, "ada"))
                assert first.data["presence"]["ids"] == ["ada"]
                second = await bob.subscribe(channel, **auth(bob, "bob"))
                assert sorted(second.data["presence"]["ids"]) == ["ada", "bob"]
                assert (await ada.next_event("pusher_internal:member_added")).data == {
                    "user_id": "bob", "user_info": {"name": "bob"}}
                # a whisper on a presence channel names its sender, across processes
                await bob.send("client-typing", {"typing": True}, channel)
                whisper = await ada.next_event("client-typing")
                assert (whisper.data, whisper.user_id) == ({"typing": True}, "bob")
                # bob unsubscribes cleanly: ada (other process) sees him leave
                await bob.send("pusher:unsubscribe", {"channel": channel})
                assert (await ada.next_event("pusher_internal:member_removed")).data == {"user_id": "bob"}
                await bob.subscribe(channel, **auth(bob, "bob"))
                await ada.next_event("pusher_internal:member_added")
                # process two dies without a word: bob's entry stops being refreshed and expires
                two.kill()
                removed = await ada.next_event("pusher_internal:member_removed", timeout=6)
                assert removed.data == {"user_id": "bob"}
                client = aioredis.from_url(server.url)
                left = await client.hgetall(presence_key(channel))
                assert [json.loads(v)["user_id"] for v in left.values()] == ["ada"]
                await client.aclose()
                await ada.close()
            finally:
                for service in (one, two):
                    service.close()
                await asyncio.gather(one.wait_closed(), two.wait_closed())

    run(scenario, timeout=25)


def test_replay_after_a_restart_loses_nothing(redis_server):
    async def scenario():
        async with await start_redis(redis_server) as server:
            app = await start_echo_app(server.url)
            process = await spawn_pusher(server.url)
            try:
                client = await PusherClient.connect(process.url)
                await client.subscribe("orders", since="0-0")
                for n in range(1, 4):
                    await app.broadcast("orders", "Tick", {"n": n})
                seen = [(await client.next_event("Tick")).data["n"] for _ in range(3)]
                last = client.last_id
                process.close()                   # a deploy: the server process restarts
                await process.wait_closed()
                await client.close()
                lost = [await app.broadcast("orders", "Tick", {"n": n}) for n in range(4, 7)]
                assert [p.receivers for p in lost] == [0, 0, 0]   # nobody listening: gone from pub/sub
                process = await spawn_pusher(server.url)
                client = await PusherClient.connect(process.url)

                async def publish_meanwhile():
                    for n in range(7, 11):
                        await app.broadcast("orders", "Tick", {"n": n})

                # events published while the replay runs: each arrives once, in order
                await asyncio.gather(client.subscribe("orders", since=last), publish_meanwhile())
                seen += [(await client.next_event("Tick")).data["n"] for _ in range(7)]
                assert seen == list(range(1, 11))
                await app.broadcast("orders", "Marker", {})
                await client.next_event("Marker")
                assert [f.data["n"] for f in client.frames if f.event == "Tick"] == list(range(4, 11))
                await client.close()
            finally:
                for service in (process, app):
                    service.close()
                await asyncio.gather(process.wait_closed(), app.wait_closed())

    run(scenario, timeout=25)
