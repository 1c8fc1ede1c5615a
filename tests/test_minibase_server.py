"""Chapter 8's realtime database with real sockets: the aiohttp server, SQLite on disk, the
kernel's client, the TCP relay that cuts a client off, REST and its SSE stream."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import websockets

from course.net.dbclient import ABORT, DbClient, DbError
from course.net.minibase import MinibaseServer, Store, start_minibase, verified_sessions
from course.net.relay import start_relay
from course.wire import dbproto
from course.wire.auth import SessionSigner
from course.wire.dbevents import Kind
from course.wire.sse import SSEParser
from course.wire.transaction import value_hash
from course.wire.tree import TreeError

ROOT = Path(__file__).resolve().parent.parent

RULES = {"rules": {
    ".read": True,
    "todos": {".write": True},
    "counter": {".write": True},
    "online": {"$uid": {".write": "auth != null && auth.uid == $uid"}},
    "admin": {".write": "auth != null && auth.uid == 'root'"},
    "scores": {"$uid": {".write": True, ".validate": "newData.isNumber() && newData.val() >= 0"}},
}}


def run(make_coro, timeout: float = 10):
    return asyncio.run(asyncio.wait_for(make_coro(), timeout))


async def until(condition, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def test_two_clients_see_each_others_writes_and_local_writes_fire_at_once():
    async def main():
        async with await start_minibase(rules=RULES) as server:
            ada = await DbClient.connect(server.url, auth={"uid": "ada"})
            bob = await DbClient.connect(server.url, auth={"uid": "bob"})
            seen_a, seen_b = [], []
            la = ada.listen("todos", lambda e: seen_a.append((e.kind, e.key)))
            lb = bob.listen("todos", lambda e: seen_b.append((e.kind, e.key)))
            await asyncio.wait_for(asyncio.gather(la.ready.wait(), lb.ready.wait()), 3)
            assert seen_a == seen_b == [(Kind.VALUE, None)]
            key, written = ada.push("todos", {"text": "milk", "done": False})
            assert seen_a[-2:] == [(Kind.CHILD_ADDED, key), (Kind.VALUE, None)], "local listeners fire at once"
            await written
            await until(lambda: (Kind.CHILD_ADDED, key) in seen_b)
            await bob.update(f"todos/{key}", {"done": True})
            await until(lambda: (Kind.CHILD_CHANGED, key) in seen_a)
            assert ada.value(f"todos/{key}") == {"text": "milk", "done": True}
            await ada.remove(f"todos/{key}")
            await until(lambda: (Kind.CHILD_REMOVED, key) in seen_b)
            assert bob.value("todos") is None and await bob.get("todos") is None
            async for event in _first(bob.listen("todos")):  # the iterator form
                assert event.kind is Kind.VALUE
            await ada.close()
            await bob.close()
    run(main)


async def _first(listener):
    yield await asyncio.wait_for(listener.__anext__(), 3)
    listener.close()


def test_denied_write_is_rolled_back_with_a_clear_error():
    async def main():
        async with await start_minibase(rules=RULES) as server:
            ada = await DbClient.connect(server.url, auth={"uid": "ada"})
            values = []
            listener = ada.listen("admin", lambda e: e.kind is Kind.VALUE and values.append(e.value))
            await listener.ready.wait()
            written = ada.set("admin/motd", "hacked")
            assert values == [None, {"motd": "hacked"}], "the optimistic write shows at once"
            with pytest.raises(DbError) as caught:
                await written
            assert caught.value.status == "permission_denied"
            assert "no .write rule grants writing /admin/motd" in str(caught.value)
            assert values[-1] is None and ada.value("admin") is None, "rolled back"
            with pytest.raises(DbError, match="validate"):
                await ada.set("scores/ada", -3)
            with pytest.raises(DbError, match="permission_denied"):
                await ada.presence("online/bob")
            assert server.tree is None
            await ada.close()
    run(main)


def test_verified_sessions_refuse_claims_and_forgeries_and_admit_signed_users():
    """By default the server believes a claimed uid; with ``verified_sessions`` only a value
    the application signed gets in, over the WebSocket and over REST."""
    signer = SessionSigner(b"k" * 32, max_age=60)
    clock = [1_000.0]
    signed = signer.sign("root", clock[0])
    body, _, mac = signed.partition(".")
    forged = SessionSigner(b"x" * 32).sign("root", clock[0])
    altered = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac

    async def main():
        async with await start_minibase(rules=RULES) as trusting:  # the default: a claim is believed
            impostor = await DbClient.connect(trusting.url, auth={"uid": "root"})
            await impostor.set("admin/motd", "claimed")
            await impostor.close()
        async with await start_minibase(rules=RULES, authenticate=verified_sessions(
                signer, clock=lambda: clock[0])) as server:
            for cred in ({"uid": "root"}, "root", forged, altered, "", 42, None.__class__.__name__):
                with pytest.raises(DbError) as caught:
                    await DbClient.connect(server.url, auth=cred, reconnect=False)
                assert caught.value.status == "permission_denied", cred
                assert "invalid credentials" in str(caught.value)
            root = await DbClient.connect(server.url, auth=signed)
            assert root.auth == signed
            await root.set("admin/motd", "signed")                   # the rules see uid root
            await root.close()
            async with aiohttp.ClientSession() as http:
                base = f"http://127.0.0.1:{server.port}"
                async with http.put(f"{base}/admin/x.json?auth=root", json=1) as r:
                    assert r.status == 401                           # a claim: signed out
                async with http.put(f"{base}/admin/x.json", params={"auth": signed}, json=1) as r:
                    assert r.status == 200
                clock[0] += 61                                       # past max_age
                async with http.put(f"{base}/admin/x.json", params={"auth": signed}, json=2) as r:
                    assert r.status == 401
            with pytest.raises(DbError, match="permission_denied"):
                await DbClient.connect(server.url, auth=signed, reconnect=False)
            assert server.tree == {"admin": {"motd": "signed", "x": 1}}
    run(main)


def test_bad_paths_and_oversized_values_are_refused_clearly():
    async def main():
        async with await start_minibase(rules=RULES, max_value_bytes=1000) as server:
            ada = await DbClient.connect(server.url)
            with pytest.raises(TreeError, match="holds '\\.'"):
                ada.set("todos/a.b", 1)  # refused locally, nothing sent
            with pytest.raises(DbError) as caught:
                await ada.set("todos/big", "x" * 2000)
            assert caught.value.status == "too_big" and "at most 1000" in str(caught.value)
            async with websockets.connect(server.url) as raw:  # what a hand-made client gets
                await raw.recv()  # hello
                for frame, expected in [
                    ('{"t":"d","d":{"r":1,"a":"p","b":{"p":"/todos/$x","d":1}}}', "invalid_path"),
                    ('{"t":"d","d":{"r":2,"a":"p","b":{"p":"/todos/x","d":{"a#":1}}}}', "invalid_path"),
                    ('{"t":"d","d":{"r":3,"a":"zz","b":{}}}', "bad_request"),
                    ("not json", "bad-json"),
                    (b"\x00binary", "not-text"),
                    ('{"t":"d","d":{"r":4,"a":"p","b":{"p":"/todos/ok","d":1}}}', "ok"),
                    ('{"t":"d","d":{"r":5,"a":"p","b":{"p":"/todos/n","d":1,"h":"%s","i":"t1"}}}' % value_hash(None), "ok"),
                    ('{"t":"d","d":{"r":6,"a":"p","b":{"p":"/todos/n","d":1,"h":"%s","i":"t1"}}}' % value_hash(None), "ok"),
                    ('{"t":"d","d":{"r":7,"a":"p","b":{"p":"/todos/n","d":1,"h":"%s","i":"t2"}}}' % value_hash(None),
                     "datastale"),
                ]:
                    await raw.send(frame)
                    answer = json.loads(await asyncio.wait_for(raw.recv(), 3))
                    got = answer["d"]["b"]["s"] if answer["t"] == "d" else answer["d"]["d"]["code"]
                    assert got == expected, (frame, answer)
            assert server.tree == {"todos": {"ok": 1, "n": 1}}, "attempt t1 sent twice, applied once"
            async with websockets.connect(server.url, max_size=None) as raw:  # a frame over the bound
                await raw.recv()
                await raw.send("x" * (server.max_frame_bytes + 1))
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(raw.recv(), 3)
                assert closed.value.rcvd.code == 1009
            with pytest.raises(websockets.InvalidStatus):  # cross-site WebSocket hijacking
                await websockets.connect(server.url, origin="http://evil.example")
            await ada.close()
            with pytest.raises(ConnectionError):
                ada.set("todos/late", 1)
    run(main)


def test_transactions_count_exactly_and_read_then_write_loses_updates():
    clients, each = 10, 20

    async def main():
        async with await start_minibase(rules=RULES) as server:
            dbs = [await DbClient.connect(server.url) for _ in range(clients)]

            async def increments(db):
                results = []  # a transaction that gives up (maxretry) is run again: the count must stay exact
                while sum(r.committed for r in results) < each:
                    results.append(await db.transaction("counter/tx", lambda n: (n or 0) + 1))
                return results

            results = [r for rs in await asyncio.gather(*(increments(db) for db in dbs)) for r in rs]
            assert server.tree["counter"]["tx"] == clients * each == sum(r.committed for r in results)
            assert all(r.committed or r.status == "maxretry" for r in results)
            assert sum(r.retries for r in results) > 0, "ten clients at once never collided: the test proves nothing"

            async def naive(db):
                for _ in range(each):
                    n = await db.get("counter/naive")
                    await db.set("counter/naive", (n or 0) + 1)

            await asyncio.gather(*(naive(db) for db in dbs))
            assert server.tree["counter"]["naive"] < clients * each, "read-then-write lost nothing?"
            aborted = await dbs[0].transaction("counter/tx", lambda n: ABORT)
            assert not aborted.committed and aborted.status == "aborted"
            for db in dbs:
                await db.close()
    run(main, timeout=20)


def test_on_disconnect_runs_when_the_relay_cuts_a_client_and_offline_writes_converge():
    async def main():
        async with await start_minibase(rules=RULES) as server, await start_relay("127.0.0.1", server.port) as relay:
            watcher = await DbClient.connect(server.url)
            online = []
            listener = watcher.listen("online", lambda e: e.kind is Kind.VALUE and online.append(e.value))
            await listener.ready.wait()
            through = f"ws://127.0.0.1:{relay.port}/.ws"
            bob = await DbClient.connect(through, auth={"uid": "bob"})
            await bob.presence("online/bob", {"state": "here"})
            await until(lambda: online[-1] == {"bob": {"state": "here"}})
            bob.url = "ws://127.0.0.1:9/.ws"  # nothing listens there: bob stays offline for now
            for handler in list(relay._handlers):  # cut the TCP link both ways
                handler.cancel()
            await until(lambda: online[-1] is None and not bob.connected)
            assert server.disconnect_writes == 1
            written = bob.set("todos/offline", "written while cut off")
            assert bob.value("todos/offline") == "written while cut off" and not written.done()
            bob.url = through
            await asyncio.wait_for(written, 5)
            await until(lambda: online[-1] == {"bob": {"state": "here"}})  # presence set again
            assert server.tree["todos"] == {"offline": "written while cut off"}
            assert bob.reconnects == 1 and relay.connections == 2
            await bob.on_disconnect_cancel("online/bob")
            await bob.close()
            await asyncio.sleep(0.2)
            assert online[-1] == {"bob": {"state": "here"}}, "a cancelled onDisconnect ran"
            await watcher.close()
    run(main)


def test_rest_and_the_sse_stream():
    async def main():
        async with await start_minibase(rules=RULES) as server, aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{server.port}"
            async with http.put(f"{base}/todos/a.json", json={"text": "tea"}) as r:
                assert r.status == 200 and await r.json() == {"text": "tea"}
            async with http.post(f"{base}/todos.json", json="pushed") as r:
                name = (await r.json())["name"]
                assert len(name) == 20
            async with http.get(f"{base}/todos.json") as r:
                assert await r.json() == {"a": {"text": "tea"}, name: "pushed"}
            async with http.put(f"{base}/admin/x.json", json=1) as r:
                assert r.status == 401 and "permission_denied" in (await r.json())["error"]
            async with http.put(f"{base}/admin/x.json?auth=root", json=1) as r:
                assert r.status == 200
            async with http.get(f"{base}/todos/a.b.json") as r:
                assert r.status == 400 and "holds '.'" in (await r.json())["error"]
            async with http.get(f"{base}/todos.json", headers={"Accept": "text/event-stream"}) as stream:
                assert stream.headers["Content-Type"] == "text/event-stream"
                parser, events = SSEParser(), []

                async def read(n):
                    while len(events) < n:
                        message = parser.feed_line((await stream.content.readline()).decode())
                        if message is not None:
                            events.append((message.event, json.loads(message.data)))

                await asyncio.wait_for(read(1), 3)
                async with http.patch(f"{base}/todos/a.json", json={"done": True}) as r:
                    assert r.status == 200
                async with http.delete(f"{base}/todos/{name}.json") as r:
                    assert r.status == 200
                async with http.put(f"{base}/.json?auth=root", json={"todos": {"z": 1}}) as r:
                    assert r.status == 401, "the root has no .write"
                server.write(dbproto.Action.PUT, (), {"todos": {"z": 1}}, check_rules=False)
                await asyncio.wait_for(read(4), 3)
            assert events == [
                ("put", {"path": "/", "data": {"a": {"text": "tea"}, name: "pushed"}}),
                ("patch", {"path": "/a", "data": {"done": True}}),
                ("put", {"path": f"/{name}", "data": None}),
                ("put", {"path": "/", "data": {"z": 1}}),
            ]
    run(main)


def test_store_replaces_subtrees_and_reloads(tmp_path):
    store = Store(tmp_path / "t.sqlite")
    assert store.journal_mode == "wal"
    store.write([(("a",), {"b": 1, "c": {"d": "x"}}), (("ab",), 2), (("z",), 3)])
    store.write([(("a", "c"), None), (("a", "b", "deeper"), True)])
    store.write([(("z", "y"), 4)])  # a leaf above is replaced
    store.close()
    again = Store(tmp_path / "t.sqlite", synchronous="NORMAL")
    assert again.load() == {"a": {"b": {"deeper": True}}, "ab": 2, "z": {"y": 4}}
    again.write([((), "just a string")])
    assert again.load() == "just a string"
    again.close()
    with pytest.raises(ValueError):
        Store(":memory:", synchronous="OFF")


def test_a_killed_server_restarts_on_its_file_with_every_acknowledged_write(tmp_path):
    database = tmp_path / "db.sqlite"

    def start():
        process = subprocess.Popen([sys.executable, "-m", "course.net.minibase", "--port", "0", "--db",
                                    str(database)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = process.stdout.readline()
        match = re.search(r"ws://\S+", line)
        assert match, f"the server did not start: {line!r}"
        return process, match.group()

    async def write_many(url):
        db = await DbClient.connect(url)
        keys = []
        for i in range(30):
            key, written = db.push("todos", {"n": i})
            keys.append(key)
            await written
        await db.update("/", {"meta/count": 30, "meta/by": "test"})
        await db.close()
        return keys

    async def read_all(url):
        db = await DbClient.connect(url)
        value = await db.get("/")
        await db.close()
        return value

    process, url = start()
    try:
        keys = run(lambda: write_many(url))
    finally:
        process.send_signal(signal.SIGKILL)  # no clean shutdown: only what was on disk counts
        process.wait(5)
    process, url = start()
    try:
        tree = run(lambda: read_all(url))
    finally:
        process.terminate()
        process.wait(5)
    assert tree["meta"] == {"count": 30, "by": "test"}
    assert sorted(tree["todos"]) == keys, "push ids sort like their creation"
    assert [tree["todos"][k]["n"] for k in keys] == list(range(30))


def test_the_server_refuses_bad_rules_and_closes_its_file(tmp_path):
    from course.wire.rules import RulesError
    with pytest.raises(RulesError):
        MinibaseServer(tmp_path / "x.sqlite", rules={"rules": {".read": "import os"}})


def test_writes_of_one_loop_turn_share_one_commit_and_a_failed_commit_undoes_them():
    async def main():
        async with await start_minibase(rules=RULES) as server:
            db = await DbClient.connect(server.url)
            await asyncio.gather(*(db.set(f"todos/{i}", i) for i in range(50)))
            assert server.tree["todos"] == {str(i): i for i in range(50)}
            assert server.commits < 50, f"{server.commits} commits for 50 pipelined writes"

            def broken_disk(writes):
                raise sqlite3.OperationalError("disk I/O error")

            server.store.write = broken_disk
            with pytest.raises(DbError) as caught:
                await db.set("todos/lost", 1)
            assert caught.value.status == "unavailable" and "disk I/O error" in str(caught.value)
            assert "lost" not in server.tree["todos"] and db.value("todos/lost") is None
            await db.close()
    run(main)


def test_tree_view_shows_the_tree_and_the_events_as_text():
    from course.ui.dbtree import TreeView

    async def main():
        async with await start_minibase(rules=RULES) as server:
            db = await DbClient.connect(server.url)
            view = TreeView("/todos", max_events=3)
            listener = view.watch(db, "todos")
            await listener.ready.wait()
            await db.set("todos/a", {"text": "<b>milk</b>"})
            await db.update("todos", {"b": 1, "a/done": True})
            assert view.text.splitlines() == ["/todos", "├─ a", "│  ├─ done: true",
                                              '│  └─ text: "<b>milk</b>"', "└─ b: 1"]
            assert list(view.events) == ["child_added b 1 (after a)",  # removed, added, changed, value
                                         'child_changed a {"done": true, "text": "<b>milk</b>"}',
                                         'value {"a": {"done": true, "text": "<b>milk</b>"}, "b":…']
            assert "<b>" not in view._tree.value and "&lt;b&gt;milk" in view._tree.value
            assert repr(view) == "TreeView(title='/todos', events=6)"
            listener.close()
            await db.close()
    run(main)


def test_the_transaction_loop_alone_against_a_compare_and_set_cell():
    from course.net.dbclient import run_transaction
    from course.wire.transaction import MAX_RETRIES, matches

    cell = {"value": 5, "puts": 0, "others": 3}  # three other writers get in first
    waits = []

    async def put(new, digest):
        cell["puts"] += 1
        if cell["others"]:
            cell["others"] -= 1
            cell["value"] += 1
        if not matches(cell["value"], digest):
            return "datastale", cell["value"]
        cell["value"] = new
        return "ok", None

    async def sleep(seconds):
        waits.append(seconds)

    result = asyncio.run(run_transaction(put, lambda n: n * 10, 5, sleep=sleep))
    assert (result.committed, result.value, result.retries, cell["value"]) == (True, 80, 3, 80)
    assert len(waits) == 3 and all(w >= 0 for w in waits)

    async def always_stale(new, digest):
        return "datastale", "someone else's"

    result = asyncio.run(run_transaction(always_stale, lambda v: 1, None, sleep=sleep))
    assert (result.committed, result.status, result.retries) == (False, "maxretry", MAX_RETRIES)


def test_server_values_count_exactly_without_transactions():
    clock = {"now": 1_000}

    async def main():
        async with await start_minibase(rules=RULES, clock=lambda: clock["now"]) as server:
            dbs = [await DbClient.connect(server.url) for _ in range(10)]
            seen = dbs[0].listen("counter/inc")
            await seen.ready.wait()
            written = [db.set("counter/inc", {".sv": {"increment": 1}}) for db in dbs for _ in range(20)]
            assert dbs[0].value("counter/inc") == 20, "the client's own increments show at once"
            await asyncio.gather(*written)
            assert server.tree["counter"]["inc"] == 200
            await until(lambda: dbs[0].value("counter/inc") == 200)
            await dbs[1].update("counter", {"at": {".sv": "timestamp"}})
            assert server.tree["counter"]["at"] == 1_000
            with pytest.raises(TreeError, match="server value"):
                dbs[1].set("counter/x", {".sv": "now"})
            await dbs[2].on_disconnect_set("counter/left", {".sv": "timestamp"})
            clock["now"] = 2_000
            await dbs[2].close()
            await until(lambda: server.tree["counter"].get("left") == 2_000)  # resolved when it ran
            for db in dbs[:2] + dbs[3:]:
                await db.close()
    run(main)
