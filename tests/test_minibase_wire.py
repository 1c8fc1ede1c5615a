"""Chapter 8's realtime database, the pure parts: the tree store, push ids, the event
generator, the rules walker, transactions and the wire protocol (no sockets here)."""

from __future__ import annotations

import copy
import json
import random

import pytest
from hypothesis import given, settings, strategies as st

from course.wire import dbproto, tree
from course.wire.dbevents import DbEvent, Kind, child_events, events_for, initial_events, replay, touches
from course.wire.dbproto import Action, BadRequest, Hello, Push, Reply, Status
from course.wire.envelope import BadMessage, ErrorCode
from course.wire.pushid import PUSH_CHARS, PushIds, next_push_id, push_id_time
from course.wire.rules import (RulesError, can_read, can_write, compile_expression, compile_rules,
                               evaluate)
from course.wire.transaction import MAX_RETRIES, Step, matches, next_step, retry_delay, value_hash
from course.wire.tree import TreeError, TreeErrorCode, format_tree, key_order, sorted_keys

FAST = settings(max_examples=60, deadline=None)

# --- strategies ----------------------------------------------------------------------------------

keys = st.sampled_from(["a", "b", "c", "1", "2", "10", "-x"])
paths = st.lists(keys, max_size=3).map(tuple)
leaves_ = st.none() | st.booleans() | st.integers(-5, 5) | st.text("xy", max_size=2)
values = st.recursive(leaves_, lambda children: st.dictionaries(keys, children, max_size=3), max_leaves=8)


def well_formed(value) -> bool:
    if isinstance(value, dict):
        return bool(value) and all(v is not None and well_formed(v) for v in value.values())
    return True


@st.composite
def writes(draw):
    kind = draw(st.sampled_from(["set", "update", "remove"]))
    path = draw(paths)
    if kind == "update":
        changes = draw(st.dictionaries(keys, values, min_size=1, max_size=3))
        return kind, path, changes
    return kind, path, draw(values)


def apply(t, write):
    kind, path, data = write
    if kind == "set":
        return tree.set_at(t, path, data)
    if kind == "update":
        return tree.update(t, path, data)
    return tree.remove(t, path)


trees = st.lists(writes(), max_size=4).map(lambda ws: _fold(ws))


def _fold(ws):
    t = None
    for w in ws:
        t = apply(t, w)
    return t


# --- the tree ------------------------------------------------------------------------------------

@FAST
@given(trees, writes())
def test_writes_keep_the_tree_well_formed_and_never_touch_their_input(t, write):
    frozen = copy.deepcopy(t)
    new = apply(t, write)
    assert t == frozen, "a write changed the old tree (it is the listeners' snapshot)"
    assert new is None or well_formed(new), f"empty node or null left in {new}"


@FAST
@given(trees, paths, values)
def test_set_then_get_and_siblings_untouched(t, path, value):
    new = tree.set_at(t, path, value)
    assert tree.get(new, path) == tree.normalize(value)
    for other in [("a",), ("b", "c"), ("2",)]:
        if not touches(other, path):
            assert tree.get(new, other) == tree.get(t, other)


@FAST
@given(trees, paths, st.dictionaries(keys, values, min_size=1, max_size=3))
def test_update_is_the_sets_one_after_the_other(t, path, changes):
    one_by_one = t
    for key, value in changes.items():
        one_by_one = tree.set_at(one_by_one, path + (key,), value)
    assert tree.update(t, path, changes) == one_by_one


def test_null_deletes_and_prunes_up_to_the_root():
    t = tree.set_at(None, "a/b/c", 1)
    assert t == {"a": {"b": {"c": 1}}}
    assert tree.remove(t, "/a/b/c/") is None
    assert tree.set_at(t, "a/b", {"c": None, "d": {}}) is None
    assert tree.update({"x": 1, "y": 2}, "/", {"x": None, "z/w": [5, None, 7]}) == {
        "y": 2, "z": {"w": {"0": 5, "2": 7}}}


@pytest.mark.parametrize("path, code", [
    ("a.b", TreeErrorCode.BAD_PATH), ("a/$b", TreeErrorCode.BAD_PATH), ("#", TreeErrorCode.BAD_PATH),
    ("a[0]", TreeErrorCode.BAD_PATH), ("a\x07b", TreeErrorCode.BAD_PATH), ("a\x7f", TreeErrorCode.BAD_PATH),
    ("k" * 769, TreeErrorCode.BAD_PATH), ("/".join("x" * 33), TreeErrorCode.TOO_DEEP),
])
def test_malformed_paths_are_refused_with_a_code(path, code):
    with pytest.raises(TreeError) as caught:
        tree.set_at(None, path, 1)
    assert caught.value.code is code
    assert str(caught.value)


def test_bad_values_and_the_size_bound():
    for bad in [float("nan"), {1: "x"}, {"a.b": 1}, {"ok": {1, 2}}]:
        with pytest.raises(TreeError):
            tree.normalize(bad)
    deep = 1
    for _ in range(40):
        deep = {"d": deep}
    with pytest.raises(TreeError) as caught:
        tree.set_at(None, "x", deep)
    assert caught.value.code is TreeErrorCode.TOO_DEEP
    assert tree.check_size({"a": "é"}) == len('{"a":"é"}'.encode())
    with pytest.raises(TreeError) as caught:
        tree.check_size("x" * 100, max_bytes=50)
    assert caught.value.code is TreeErrorCode.TOO_BIG
    with pytest.raises(TreeError, match="overlap"):
        tree.update(None, "/", {"a": 1, "a/b": 2})


# --- the event generator -------------------------------------------------------------------------

RANK = {Kind.CHILD_REMOVED: 0, Kind.CHILD_ADDED: 1, Kind.CHILD_CHANGED: 2, Kind.VALUE: 3}


@FAST
@given(trees, writes(), paths)
def test_events_replayed_on_a_copy_give_the_same_tree(t, write, listener):
    new = apply(t, write)
    events = events_for("/".join(listener), t, new)
    old_at, new_at = tree.get(t, listener), tree.get(new, listener)
    assert (events == []) == (old_at == new_at)
    assert replay(old_at, events) == new_at
    children = [e for e in events if e.kind is not Kind.VALUE]
    if isinstance(old_at, (dict, type(None))) and isinstance(new_at, (dict, type(None))):
        assert replay(old_at, children) == new_at, "the child events alone rebuild the new snapshot"
    ranks = [RANK[e.kind] for e in events]
    assert ranks == sorted(ranks), "removed, added, changed, then value"
    assert not events or events[-1].kind is Kind.VALUE
    if not touches(listener, write[1]):
        assert events == [], "a write far from the listener touched it"


@FAST
@given(trees, writes())
def test_previous_child_key_is_the_one_before_in_key_order(t, write):
    new = apply(t, write)
    order = sorted_keys(tree.get(new, ()))
    for event in child_events("/", t, new):
        if event.kind is not Kind.CHILD_REMOVED:
            i = order.index(event.key)
            assert event.previous == (order[i - 1] if i else None)


def test_one_write_notifies_at_above_and_below():
    old = {"rooms": {"lobby": {"title": "Lobby", "n": 1}}}
    new = tree.set_at(old, "rooms/lobby/n", 2)
    assert [e.kind for e in events_for("/rooms", old, new)] == [Kind.CHILD_CHANGED, Kind.VALUE]
    assert events_for("/rooms/lobby", old, new)[0] == DbEvent(Kind.CHILD_CHANGED, "/rooms/lobby", "n", 2, None)
    assert events_for("/rooms/lobby/n", old, new) == [DbEvent(Kind.VALUE, "/rooms/lobby/n", None, 2)]
    assert events_for("/rooms/lobby/title", old, new) == []
    replaced = tree.set_at(old, "rooms", {"lobby": {"title": "Hall"}})
    assert [(e.kind, e.key) for e in events_for("/rooms/lobby", old, replaced)] == [
        (Kind.CHILD_REMOVED, "n"), (Kind.CHILD_CHANGED, "title"), (Kind.VALUE, None)]
    assert [(e.kind, e.key, e.previous) for e in initial_events("/", {"b": 1, "a": 2, "10": 0, "9": 1})] == [
        (Kind.CHILD_ADDED, "9", None), (Kind.CHILD_ADDED, "10", "9"), (Kind.CHILD_ADDED, "a", "10"),
        (Kind.CHILD_ADDED, "b", "a"), (Kind.VALUE, None, None)]
    assert sorted(["b", "-1", "007", "7", "a", "2147483648"], key=key_order) == [
        "-1", "7", "007", "2147483648", "a", "b"]


# --- push ids ------------------------------------------------------------------------------------

def test_push_id_shape_time_and_order():
    ids = PushIds(random.Random(1))
    made = [ids(1_700_000_000_000) for _ in range(300)] + [ids(1_700_000_000_001), ids(1_800_000_000_000)]
    assert all(len(i) == 20 and set(i) <= set(PUSH_CHARS) for i in made)
    assert made == sorted(made) and len(set(made)) == len(made), "not strictly increasing"
    assert push_id_time(made[0]) == 1_700_000_000_000 and push_id_time(made[-1]) == 1_800_000_000_000
    assert made[0][:8] == made[299][:8] and made[0][8:] != made[1][8:]
    assert next_push_id(0, None, [0] * 12, random.Random(0))[0][:8] == "--------"
    assert list(PUSH_CHARS) == sorted(PUSH_CHARS), "the alphabet must be in ASCII order"


def test_same_millisecond_adds_one_with_carry():
    push_id, digits = next_push_id(5, 5, [0] * 10 + [3, 63], random.Random(0))
    assert digits == [0] * 10 + [4, 0] and push_id[8:] == "-" * 10 + "3-"
    with pytest.raises(ValueError, match="overflowed"):
        next_push_id(5, 5, [63] * 12, random.Random(0))
    with pytest.raises(ValueError):
        next_push_id(-1, None, [0] * 12, random.Random(0))


@FAST
@given(st.lists(st.integers(0, 2 ** 40), min_size=2, max_size=30))
def test_push_ids_sort_like_their_times(times):
    ids = PushIds(random.Random(7))
    made = [(t, ids(t)) for t in sorted(times)]
    assert [i for _, i in made] == sorted(i for _, i in made)


# --- rules ---------------------------------------------------------------------------------------

RULES = compile_rules({"rules": {
    "public": {".read": True, ".write": "auth != null", "locked": {".write": False}},
    "users": {"$uid": {
        ".read": "auth != null && auth.uid == $uid",
        ".write": "auth != null && auth.uid === $uid",
        ".validate": "newData.hasChildren(['name'])",
        "name": {".validate": "newData.isString() && newData.val().length <= 10"},
        "age": {".validate": "newData.isNumber() && newData.val() >= 0"},
        "$other": {".validate": False},
    }},
    "counter": {".read": True, ".write": "newData.isNumber() && (!data.exists() || newData.val() == data.val() + 1)"},
}})


def write_ok(path, value, auth=None, old=None):
    return bool(can_write(RULES, path, old_root=old, new_root=tree.set_at(old, path, value), auth=auth))


def test_grants_cascade_and_cannot_be_revoked_deeper():
    assert write_ok("public/locked/x", 1, {"uid": "a"}), "a .write above cannot be revoked by false below"
    assert not write_ok("public/x", 1), "auth is null"
    assert not write_ok("elsewhere", 1, {"uid": "a"}), "no rule grants: denied by default"
    assert can_read(RULES, "public/locked/deep", root=None)
    assert not can_read(RULES, "/", root=None)


def test_dollar_variables_auth_and_validate():
    ada = {"uid": "ada"}
    assert write_ok("users/ada", {"name": "Ada"}, ada)
    decision = can_write(RULES, "users/bob", old_root=None, new_root={"users": {"bob": {"name": "B"}}}, auth=ada)
    assert not write_ok("users/bob", {"name": "Bob"}, ada)
    assert not write_ok("users/ada", {"age": 3}, ada), "validate at $uid: a name is required"
    assert not write_ok("users/ada", {"name": "A" * 11}, ada)
    assert not write_ok("users/ada", {"name": "Ada", "admin": True}, ada), "$other refuses unknown children"
    assert not write_ok("users/ada", {"name": "Ada", "age": -1}, ada)
    old = {"users": {"ada": {"name": "Ada"}}}
    assert write_ok("users/ada/age", 36, ada, old), "validate of the ancestor sees the merged newData"
    assert write_ok("users/ada", None, ada, old), ".validate never refuses a delete"
    assert can_read(RULES, "users/ada", root=old, auth=ada) and not can_read(RULES, "users/ada", root=old)
    assert not decision and decision.reason == "no .write rule grants writing /users/bob"


def test_data_and_new_data_make_a_counter_rule():
    old = {"counter": 4}
    assert write_ok("counter", 5, None, old)
    assert not write_ok("counter", 7, None, old)
    assert not write_ok("counter", "5", None, old)


@pytest.mark.parametrize("expression", [
    "__import__('os')", "data.val().__class__", "lambda: 1", "[x for x in data]", "open('f')",
    "data.val()[0]", "x if y else z", "a := 1", "auth.uid; 1", "eval('1')", "data.exists().__globals__",
    "unknown_name", "data.val().format()", "auth.uid.__len__()", "2 ** 100000", "data in root",
    "{'a': 1}", "f'{auth}'", "`x`", "data.child(path=1)",
])
def test_the_walker_refuses_everything_not_whitelisted(expression):
    with pytest.raises(RulesError) as caught:
        compile_expression(expression)
    assert str(caught.value)


def test_expressions_evaluate_like_firebase():
    def ev(source, **kw):
        return evaluate(compile_expression(source, {"uid"}), **kw)
    assert ev("true && !false") and not ev("null == false") and not ev("1 === true")
    assert ev("'ab' + 'c' == 'abc' && 'abc'.length == 3 && 'Abc'.toLowerCase().beginsWith('ab')")
    assert ev("now > 1000 && now % 2 == 0", now=1002)
    assert ev("$uid == 'ada' && auth.uid == $uid", auth={"uid": "ada"}, variables={"uid": "ada"})
    assert not ev("auth.uid == 'ada'"), "a method or attribute of null is false, not an error"
    assert not ev("data.val() - 'x' > 0", data=3)
    assert ev("root.child('a/b').val() == 2 && root.child('a').parent().hasChild('a/b')", root={"a": {"b": 2}})
    assert not ev("1 / 0 == 1")
    with pytest.raises(RulesError, match=r"at /a/\$x"):
        compile_rules({"rules": {"a": {"$x": {".write": "$y == 1"}}}})
    with pytest.raises(RulesError, match="two \\$ variables"):
        compile_rules({"a": {"$x": {}, "$y": {}}})
    with pytest.raises(RulesError, match="unknown rule"):
        compile_rules({".writ": True})


# --- transactions and the wire ---------------------------------------------------------------------

def test_transaction_hash_and_retry_decision():
    assert value_hash({"b": 1, "a": [1, 2]}) == value_hash({"a": [1, 2], "b": 1})
    assert matches(None, value_hash(None)) and not matches(1, value_hash(None))
    assert next_step("ok", 0) is Step.DONE
    assert next_step("datastale", MAX_RETRIES - 1) is Step.RETRY
    assert next_step("datastale", MAX_RETRIES) is Step.GIVE_UP
    assert next_step("permission_denied", 0) is Step.FAIL
    rng = random.Random(3)
    assert all(0 <= retry_delay(n, rng) <= min(0.2, 0.002 * 2 ** n) for n in range(30))


def test_requests_round_trip():
    text = dbproto.encode_request(3, Action.PUT, {"p": "/a/b", "d": {"x": 1}, "h": "00"})
    assert json.loads(text) == {"t": "d", "d": {"r": 3, "a": "p", "b": {"p": "/a/b", "d": {"x": 1}, "h": "00"}}}
    request = dbproto.decode_request(text)
    assert (request.r, request.action, request.path, request.data, request.hash) == (
        3, Action.PUT, ("a", "b"), {"x": 1}, "00")
    assert dbproto.decode_server(dbproto.reply(3, Status.DATASTALE, 5)) == Reply(3, "datastale", 5)
    assert dbproto.decode_server(dbproto.data_push(("a",), 1)) == Push("d", ("a",), 1)
    assert dbproto.decode_server(dbproto.merge_push("/", {"a/b": None})) == Push("m", (), {"a/b": None})
    assert dbproto.decode_server(dbproto.hello(5, "s1")) == Hello(5, "5", "s1")


@pytest.mark.parametrize("frame, r, status, code", [
    ("nope", None, None, ErrorCode.BAD_JSON),
    (b"\xff", None, None, ErrorCode.NOT_TEXT),
    ('{"t":"x"}', None, None, ErrorCode.BAD_SHAPE),
    ('{"t":"d","d":{"r":"1","a":"q","b":{"p":"/"}}}', None, None, ErrorCode.BAD_SHAPE),
    ('{"t":"d","d":{"r":1,"a":"zz","b":{}}}', 1, Status.BAD_REQUEST, None),
    ('{"t":"d","d":{"r":2,"a":"q","b":{}}}', 2, Status.BAD_REQUEST, None),
    ('{"t":"d","d":{"r":3,"a":"p","b":{"p":"/a.b","d":1}}}', 3, Status.INVALID_PATH, None),
    ('{"t":"d","d":{"r":4,"a":"p","b":{"p":"/a"}}}', 4, Status.BAD_REQUEST, None),
    ('{"t":"d","d":{"r":5,"a":"m","b":{"p":"/a","d":3}}}', 5, Status.BAD_REQUEST, None),
    ('{"t":"d","d":{"r":6,"a":"m","b":{"p":"/a","d":{},"h":"x"}}}', 6, Status.BAD_REQUEST, None),
    ('{"t":"d","d":{"r":7,"a":"q","b":[]}}', 7, Status.BAD_REQUEST, None),
    ('{"t":"d","d":{"r":8,"a":"p","b":{"p":"/a","d":1,"i":"x"}}}', 8, Status.BAD_REQUEST, None),
    ('{"t":"d","d":{"r":9,"a":"p","b":{"p":"/a","d":1,"h":"0","i":""}}}', 9, Status.BAD_REQUEST, None),
])
def test_malformed_frames_get_clear_answers(frame, r, status, code):
    with pytest.raises(BadRequest) as caught:
        dbproto.decode_request(frame)
    answer = json.loads(caught.value.answer())
    if r is None:
        assert answer["t"] == "c" and answer["d"]["d"]["code"] == code.value and answer["d"]["d"]["error"]
    else:
        assert answer["d"]["r"] == r and answer["d"]["b"]["s"] == status.value and answer["d"]["b"]["d"]
    with pytest.raises(BadMessage):
        dbproto.decode_server('{"t":"d","d":{"a":"q"}}')


def test_format_tree_draws_the_tree_in_key_order():
    text = format_tree({"todos": {"a": {"text": "milk", "done": False}}, "n": 3, "10": "x" * 100})
    assert text.splitlines() == [
        "/", "├─ 10: \"" + "x" * 58 + "…", "├─ n: 3", "└─ todos", "   └─ a", "      ├─ done: false",
        "      └─ text: \"milk\""]
    assert format_tree(None) == "/: null" and format_tree(5, name="/n") == "/n: 5"
    assert format_tree({str(i): i for i in range(10)}, max_lines=3).splitlines()[-1] == "… 8 more lines"


def test_server_values_resolve_against_the_current_value():
    assert tree.resolve_server_values({".sv": "timestamp"}, None, 7) == 7
    assert tree.resolve_server_values({".sv": {"increment": 2}}, 40, 0) == 42
    assert tree.resolve_server_values({".sv": {"increment": 2}}, "text", 0) == 2
    assert tree.resolve_server_values({"n": {".sv": {"increment": -1}}, "t": {".sv": "timestamp"}, "x": 1},
                                      {"n": 5}, 9) == {"n": 4, "t": 9, "x": 1}
    for bad in [{".sv": "now"}, {".sv": {"increment": "1"}}, {".sv": "timestamp", "x": 1}, {".sv": {"increment": True}}]:
        with pytest.raises(TreeError, match="server value"):
            tree.resolve_server_values(bad, None, 0)
    assert tree.has_server_values([{"a": {".sv": "timestamp"}}]) and not tree.has_server_values({"a": 1})
