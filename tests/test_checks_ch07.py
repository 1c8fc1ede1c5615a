"""The chapter 7 self-checks: ❌ on stubs and on plausible wrong answers, ✅ on correct ones.

The correct answers are the course's own (``course.wire.pusher``: ``route``, ``auth_string``,
``presence_at``, which the servers' rules match) and the solution notebook's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from check_lines import failing, run, stub
from course.checks.ch07 import check_auth, check_presence, check_route
from course.wire.pusher import auth_string, presence_at, route
from notebook_defs import defined_in

SOLUTION = "solutions/07_scaling_out_with_redis_exercises.ipynb"



CHECKS = {"route": (check_route, route, 8), "auth": (check_auth, auth_string, 5),
          "presence_at": (check_presence, presence_at, 8)}


@pytest.mark.parametrize("name", list(CHECKS))
@pytest.mark.parametrize("source", ["library", "solution"])
def test_right_answers_pass(name, source, capsys):
    checker, library, count = CHECKS[name]
    answer = library if source == "library" else defined_in(SOLUTION, name)
    ok, cases = run(checker(answer), capsys)
    assert ok and not failing(cases) and len(cases) == count


@pytest.mark.parametrize("name", list(CHECKS))
def test_stub_is_not_implemented_without_hints(name, capsys):
    checker, _, count = CHECKS[name]
    ok, cases = run(checker(stub), capsys)
    assert not ok and len(failing(cases)) == count
    assert all("not implemented yet" in line and "Hint" not in line for line in cases.values())


def only_fails(cases: dict[str, str], *expected: str) -> None:
    got = failing(cases)
    for name in expected:
        assert any(f.startswith(name) for f in got), (name, got)
    for line in (cases[f] for f in got):
        assert "Hint:" in line, line


# --------------------------------------------------------------------------- (a) route

def _route_data_as_object(channel, raw, subscriptions):
    payload = json.loads(raw)
    frame = json.dumps({"event": payload["event"], "channel": channel, "data": payload["data"]})
    return {s: frame for s, chans in subscriptions.items() if channel in chans and s != payload.get("socket")}


def _route_no_to_others(channel, raw, subscriptions):
    return route(channel, json.dumps({**json.loads(raw), "socket": None}), subscriptions)


def _route_everyone(channel, raw, subscriptions):
    return route(channel, raw, {s: {channel} for s in subscriptions})


def _route_crashes_on_bad_input(channel, raw, subscriptions):
    payload = json.loads(raw)
    payload["event"].upper()                                   # AttributeError / KeyError on bad shapes
    return route(channel, raw, subscriptions)


def _route_drops_id(channel, raw, subscriptions):
    payload = json.loads(raw)
    payload.pop("id", None)
    return route(channel, json.dumps(payload), subscriptions)


def _route_data_null(channel, raw, subscriptions):
    payload = json.loads(raw)
    frame = json.dumps({"event": payload["event"], "channel": channel, "data": json.dumps(payload["data"])})
    return {s: frame for s, chans in route(channel, raw, subscriptions).items()}


@pytest.mark.parametrize("wrong, expected", [
    (_route_data_as_object, ["the subscribers of the channel", "the frame's data is a JSON-encoded string"]),
    (_route_no_to_others, ["toOthers()"]),
    (_route_everyone, ["the subscribers of the channel", "nobody subscribed here"]),
    (_route_crashes_on_bad_input, ["a message that is not Laravel's shape"]),
    (_route_drops_id, ["bytes from Redis, and the stream id"]),
    (_route_data_null, ["data null becomes {}"]),
])
def test_route_wrong_answers_fail_where_expected(wrong, expected, capsys):
    ok, cases = run(check_route(wrong), capsys)
    assert not ok
    only_fails(cases, *expected)


# --------------------------------------------------------------------------- (b) auth

def _message(socket_id, channel, channel_data):
    return f"{socket_id}:{channel}" + (f":{channel_data}" if channel_data is not None else "")


def _auth_no_key(key, secret, socket_id, channel, channel_data=None):
    return hmac.new(secret.encode(), _message(socket_id, channel, channel_data).encode(), hashlib.sha256).hexdigest()


def _auth_base64(key, secret, socket_id, channel, channel_data=None):
    digest = hmac.new(secret.encode(), _message(socket_id, channel, channel_data).encode(), hashlib.sha256).digest()
    return f"{key}:{base64.b64encode(digest).decode()}"


def _auth_swapped(key, secret, socket_id, channel, channel_data=None):
    return auth_string(key, secret, channel, socket_id, channel_data)


def _auth_key_as_hmac_key(key, secret, socket_id, channel, channel_data=None):
    return auth_string(key, key, socket_id, channel, channel_data)


def _auth_ignores_channel_data(key, secret, socket_id, channel, channel_data=None):
    return auth_string(key, secret, socket_id, channel)


def _auth_plain_hash(key, secret, socket_id, channel, channel_data=None):
    text = secret + _message(socket_id, channel, channel_data)
    return f"{key}:{hashlib.sha256(text.encode()).hexdigest()}"


def _auth_hardcoded_key(key, secret, socket_id, channel, channel_data=None):
    return auth_string("course-key", secret, socket_id, channel, channel_data)


@pytest.mark.parametrize("wrong, expected", [
    (_auth_no_key, ["a private channel", "a presence channel"]),
    (_auth_base64, ["a private channel", "the secret is the HMAC key"]),
    (_auth_swapped, ["a private channel", "another socket id"]),
    (_auth_key_as_hmac_key, ["a private channel", "the secret is the HMAC key"]),
    (_auth_ignores_channel_data, ["a presence channel signs", "the same presence call"]),
    (_auth_plain_hash, ["a private channel"]),
    (_auth_hardcoded_key, ["the secret is the HMAC key"]),
])
def test_auth_wrong_answers_fail_where_expected(wrong, expected, capsys):
    ok, cases = run(check_auth(wrong), capsys)
    assert not ok
    only_fails(cases, *expected)


# --------------------------------------------------------------------------- (c) presence

def _presence_le(entries, now):
    return presence_at(entries, now + 1e-9)   # expires at until == now too (<= instead of <)


def _presence_per_socket(entries, now):
    present, expired, _ = presence_at(entries, now)
    gone = {json.loads(v)["user_id"] for k, v in entries.items()
            if (k.decode() if isinstance(k, bytes) else k) in expired}
    return present, expired, gone                              # a user with another live tab is "gone"


def _presence_missing_until_lives(entries, now):
    fixed = {}
    for k, v in entries.items():
        try:
            value = json.loads(v)
        except ValueError:
            fixed[k] = v
            continue
        if isinstance(value, dict) and "until" not in value:
            value["until"] = float("inf")
        fixed[k] = json.dumps(value)
    return presence_at(fixed, now)


def _presence_crashes_on_bad_json(entries, now):
    for value in entries.values():
        json.loads(value)["user_id"]
    return presence_at(entries, now)


def _presence_bytes_keys(entries, now):
    present, expired, gone = presence_at(entries, now)
    raw = {k for k in entries if isinstance(k, bytes)}
    return present, {k for k in raw if k.decode() in expired} | (expired - {k.decode() for k in raw}), gone


def _presence_users_as_list(entries, now):
    present, expired, gone = presence_at(entries, now)
    users = []
    for k, v in entries.items():
        try:
            value = json.loads(v)
            if value["until"] >= now:
                users.append(value["user_id"])
        except Exception:
            pass
    return users, expired, gone                                # a list: one entry per tab


@pytest.mark.parametrize("wrong, expected", [
    (_presence_le, ["exactly at `until`"]),
    (_presence_per_socket, ["a user with another live tab"]),
    (_presence_missing_until_lives, ["bytes from HGETALL, an entry without `until`"]),
    (_presence_crashes_on_bad_json, ["broken entries are skipped"]),
    (_presence_bytes_keys, ["bytes from HGETALL"]),
])
def test_presence_wrong_answers_fail_where_expected(wrong, expected, capsys):
    ok, cases = run(check_presence(wrong), capsys)
    assert not ok
    only_fails(cases, *expected)


def test_presence_lists_with_a_user_per_tab_fail(capsys):
    ok, cases = run(check_presence(_presence_users_as_list), capsys)
    assert not ok
    tabs = next(line for name, line in cases.items() if "several tabs count once" in name)
    assert tabs.startswith("❌") and "expected a set, got list" in tabs
