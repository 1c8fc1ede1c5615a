"""Self-checks for chapter 8: child events, push ids, the transaction loop, a security rule.

Used by ``solutions/08_realtime_database_exercises.ipynb``::

    check_child_events(child_events)
    check_next_push_id(next_push_id)
    check_next_step(next_step)
    await check_run_transaction(run_transaction)
    check_todo_rules(todo_rules)

Every student function runs inside :func:`course.checks.check` / :func:`acheck`: a stub or a
bug is a ❌ line with a hint, never a traceback.  The expected answers come from the library:
:func:`course.wire.dbevents.child_events`, :func:`course.wire.pushid.next_push_id`,
:func:`course.wire.transaction.next_step`, and :func:`course.wire.rules.can_write` for the
rules the student writes.
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Callable
from typing import Any

from course.checks import acheck, check, expect, expect_equal, summary
from course.net.dbclient import ABORT
from course.wire import dbevents, pushid, transaction
from course.wire.rules import RulesError, can_read, can_write, compile_rules
from course.wire.tree import Value, remove, set_at

__all__ = ["check_child_events", "check_next_push_id", "check_next_step", "check_run_transaction",
           "check_todo_rules"]


# --------------------------------------------------------------------------- (1) child events

def _rows(events: Any) -> list[tuple]:
    expect(isinstance(events, list), f"child_events must return a list, got {type(events).__name__}")
    rows = []
    for event in events:
        expect(isinstance(event, dbevents.DbEvent), f"each item must be a DbEvent, got {event!r}")
        rows.append((event.kind.value if isinstance(event.kind, dbevents.Kind) else event.kind,
                     event.path, event.key, event.value, event.previous))
    return rows


_MILK, _EGGS, _BREAD = {"text": "milk"}, {"text": "eggs"}, {"text": "bread"}
_CHILD_CASES = [
    ("children of an empty list are added, each after the one before it", None, {"a": _MILK, "b": _EGGS},
     "an empty snapshot (None) has no children; `previous` is the key before this one in the new order."),
    ("a child that is gone: child_removed with its old value", {"a": _MILK, "b": _EGGS}, {"b": _EGGS},
     "child_removed carries the value the child had (it is gone from `new`), and no previous."),
    ("a child whose value changed: child_changed", {"a": _MILK, "b": _EGGS}, {"a": _MILK, "b": _BREAD},
     "compare old[key] with new[key] for the keys in both."),
    ("an unchanged snapshot raises nothing", {"a": _MILK}, {"a": {"text": "milk"}},
     "equal values are not a change (compare with ==)."),
    ("removed first, then added, then changed", {"a": _MILK, "b": _EGGS}, {"b": _BREAD, "c": _MILK},
     "three lists, in that order: removed + added + changed."),
    ("previous is the key before, in the new snapshot", {"a": 1, "c": 3}, {"b": 2, "c": 30, "d": 4},
     "build the order from `new`, not from `old`."),
    ("keys that are numbers sort as numbers, before the others", None, {"10": "x", "9": "y", "a": "z"},
     "Firebase's key order: use course.wire.tree.sorted_keys, not sorted()."),
    ("a leaf that becomes an object: its children are added", "just text", {"a": 1},
     "a snapshot that is not a dict counts as having no children."),
    ("an object that becomes a leaf: its children are removed", {"a": 1, "b": 2}, 5,
     "a snapshot that is not a dict counts as having no children."),
]


def check_child_events(child_events: Callable[[str, Value, Value], list]) -> bool:
    """Check ``child_events(path, old, new) -> [DbEvent, ...]`` against the library's."""
    results = []
    for name, old, new, hint in _CHILD_CASES:
        def test(old=old, new=new) -> None:
            old_copy, new_copy = copy.deepcopy(old), copy.deepcopy(new)
            got = _rows(child_events("/todos", old_copy, new_copy))
            expect_equal(got, _rows(dbevents.child_events("/todos", old, new)), "events (kind, path, key, value, previous)")
            expect(old_copy == old and new_copy == new, "the snapshots passed in were modified")
        results.append(check(name, test, hint))

    def rebuilds() -> None:
        rng = random.Random(8)
        for _ in range(200):
            old = {k: rng.randrange(3) for k in rng.sample("abcdef12", rng.randrange(6))} or None
            new = {k: rng.randrange(3) for k in rng.sample("abcdef12", rng.randrange(6))} or None
            rebuilt = dbevents.replay(old, child_events("/x", old, new))
            expect(rebuilt == new, f"replaying your events on {old} gives {rebuilt}, not {new}")

    results.append(check("replaying your events on 200 random snapshots rebuilds the new one", rebuilds,
                         "every key of new that is not in old is added, every key of old not in new removed."))
    return summary(results, "child_events")


# --------------------------------------------------------------------------- (2) push ids

_T = 1_700_000_000_000


def _id_of(result: Any) -> tuple[str, list[int]]:
    expect(isinstance(result, tuple) and len(result) == 2,
           f"next_push_id must return (id, random_digits), got {result!r}")
    push_id, digits = result
    expect(isinstance(push_id, str), f"the id must be a str, got {push_id!r}")
    digits = list(digits)
    return push_id, digits


def check_next_push_id(next_push_id: Callable) -> bool:
    """Check ``next_push_id(now_ms, last_ms, last_random, rng) -> (id, digits)``."""

    def shape() -> None:
        push_id, digits = _id_of(next_push_id(_T, None, [0] * 12, random.Random(1)))
        expect(len(push_id) == 20, f"an id has 20 characters, got {len(push_id)}: {push_id!r}")
        expect(all(c in pushid.PUSH_CHARS for c in push_id), f"{push_id!r} has characters outside PUSH_CHARS")
        expect(len(digits) == 12 and all(isinstance(d, int) and 0 <= d < 64 for d in digits),
               f"the random part is 12 digits in 0..63, got {digits!r}")
        expect_equal(push_id[8:], "".join(pushid.PUSH_CHARS[d] for d in digits),
                     "the last 12 characters (the digits written with PUSH_CHARS)")

    def time_part() -> None:
        for now in (0, 1, 63, 64, _T, 64 ** 8 - 1):
            push_id, _ = _id_of(next_push_id(now, None, [0] * 12, random.Random(2)))
            expected, _ = pushid.next_push_id(now, None, [0] * 12, random.Random(2))
            expect_equal(push_id[:8], expected[:8], f"the time part for now_ms={now}")

    def fresh_random() -> None:
        push_id, digits = _id_of(next_push_id(_T + 1, _T, [5] * 12, random.Random(3)))
        expect(digits != [5] * 12 and digits != [5] * 11 + [6],
               "a new millisecond draws 12 fresh random digits from rng; you reused the previous ones")

    def plus_one() -> None:
        last = [7] * 11 + [9]
        _, digits = _id_of(next_push_id(_T, _T, list(last), random.Random(4)))
        expect_equal(digits, [7] * 11 + [10], "the digits of a second id in the same millisecond")

    def carry() -> None:
        last = [1] * 9 + [5, 63, 63]
        _, digits = _id_of(next_push_id(_T, _T, list(last), random.Random(5)))
        expect_equal(digits, [1] * 9 + [6, 0, 0], "the digits after [..., 5, 63, 63] plus one")

    def many_sorted() -> None:
        rng, last_ms, last = random.Random(6), None, [0] * 12
        made = []
        for now in [_T] * 500 + [_T + 1] * 500 + [_T + 64] * 10:
            push_id, last = _id_of(next_push_id(now, last_ms, last, rng))
            last_ms = now
            made.append(push_id)
        expect(len(set(made)) == len(made), "two ids were equal")
        expect(sorted(made) == made, "sorted as strings, the ids are not in creation order")

    def refuses() -> None:
        for now in (-1, 64 ** 8):
            try:
                result = next_push_id(now, None, [0] * 12, random.Random(7))
            except ValueError:
                continue
            raise AssertionError(f"now_ms={now} returned {result!r}; it should raise ValueError")
        try:
            result = next_push_id(_T, _T, [63] * 12, random.Random(7))
        except ValueError:
            return
        raise AssertionError(f"64**12 ids in one millisecond returned {result!r}; it should raise ValueError")

    results = [
        check("20 characters of PUSH_CHARS; the last 12 are the digits", shape,
              "8 time characters, then PUSH_CHARS[d] for each of the 12 digits."),
        check("the first 8 characters are the time in base 64, most significant first", time_part,
              "take now_ms % 64 eight times (dividing by 64), then reverse."),
        check("a new millisecond draws new random digits", fresh_random,
              "when now_ms != last_ms: [rng.randrange(64) for _ in range(12)]."),
        check("the same millisecond: the previous digits plus one", plus_one,
              "copy last_random and add 1 to the last digit."),
        check("plus one carries: 63 becomes 0 and the digit before goes up", carry,
              "walk from the last digit: a 63 becomes 0 and you move left."),
        check("1010 ids over three milliseconds: all different, sorted = created", many_sorted,
              "the same millisecond must add one; a new one must draw fresh digits."),
        check("ValueError: now_ms out of [0, 64**8), or the digits overflow", refuses,
              "check the range first; all twelve digits at 63 cannot go up."),
    ]
    return summary(results, "next_push_id")


# --------------------------------------------------------------------------- (3) transactions

_STEP_CASES = [
    ("ok: done", "ok", 0, 25, "done"),
    ("ok after retries: still done", "ok", 25, 25, "done"),
    ("datastale, first try: retry", "datastale", 0, 25, "retry"),
    ("datastale after 24 retries: one more", "datastale", 24, 25, "retry"),
    ("datastale after 25 retries: give up (maxretry)", "datastale", 25, 25, "maxretry"),
    ("with max_retries=0, the first datastale gives up", "datastale", 0, 0, "maxretry"),
    ("permission_denied: fail, never retry", "permission_denied", 0, 25, "fail"),
    ("any other status: fail", "too_big", 3, 25, "fail"),
]


def _step_value(step: Any) -> Any:
    return step.value if isinstance(step, transaction.Step) else step


def check_next_step(next_step: Callable[[str, int, int], Any]) -> bool:
    """Check the pure decision ``next_step(status, retries, max_retries) -> str``."""
    results = []
    for name, status, retries, bound, expected in _STEP_CASES:
        def test(status=status, retries=retries, bound=bound) -> None:
            expect_equal(_step_value(next_step(status, retries, bound)),
                         transaction.next_step(status, retries, bound).value,
                         f"next_step({status!r}, {retries}, {bound})")
        results.append(check(name, test, "ok → 'done'; datastale → 'retry' while retries < max_retries, "
                                         "else 'maxretry'; anything else → 'fail'."))
    return summary(results, "next_step")


_MAX_PUTS = 100  #: a transaction that sends more has a loop that never ends


class _FakeServer:
    """Holds one value; answers puts as minibase does (compare the hash, write or datastale)."""

    def __init__(self, value: Value, interfere: int = 0, refuse: str | None = None) -> None:
        self.value, self.interfere, self.refuse = value, interfere, refuse
        self.puts: list[tuple[Value, str]] = []

    async def put(self, new: Value, digest: str) -> tuple[str, Value]:
        await asyncio.sleep(0)  # a real put waits for the network: the check's deadline can fire
        if len(self.puts) >= _MAX_PUTS:
            raise AssertionError(f"more than {_MAX_PUTS} puts: the loop does not stop "
                                 "(only 'retry' may loop; 'fail' and 'maxretry' return)")
        self.puts.append((new, digest))
        if self.refuse:
            return self.refuse, "refused by the rules"
        if self.interfere > 0:  # another client wrote just before us
            self.interfere -= 1
            self.value = (self.value or 0) + 100
        if not transaction.matches(self.value, digest):
            return "datastale", self.value
        self.value = new
        return "ok", None


def _result(result: Any) -> tuple:
    expect(isinstance(result, tuple) and len(result) == 3,
           f"run_transaction must return (status, value, retries), got {result!r}")
    return result


async def check_run_transaction(run_transaction: Callable) -> bool:
    """Check ``await run_transaction(put, function, current, max_retries) -> (status, value, retries)``
    against a fake server."""
    add_one = lambda n: (n or 0) + 1  # noqa: E731

    async def no_contention() -> None:
        server = _FakeServer(5)
        got = _result(await run_transaction(server.put, add_one, 5, 25))
        expect_equal(got, ("ok", 6, 0), "(status, value, retries)")
        expect_equal(server.puts, [(6, transaction.value_hash(5))], "the puts sent (value, hash of current)")

    async def stale_once() -> None:
        server = _FakeServer(5, interfere=1)
        got = _result(await run_transaction(server.put, add_one, 5, 25))
        expect_equal(got, ("ok", 106, 1), "(status, value, retries)")
        expect_equal(server.value, 106, "the server's value")
        expect_equal(server.puts[1], (106, transaction.value_hash(105)),
                     "the second put: the function run again on the value datastale returned")

    async def gives_up() -> None:
        server = _FakeServer(0, interfere=1000)
        got = _result(await run_transaction(server.put, add_one, 0, 3))
        expect_equal((got[0], got[2]), ("maxretry", 3), "(status, retries)")
        expect_equal(len(server.puts), 4, "number of puts (the first try and 3 retries)")
        expect(transaction.value_hash(got[1]) == server.puts[-1][1],
               f"the value returned with 'maxretry' is {got[1]!r}: return `current`, the value "
               "the last try started from (not the new value, which was never written)")

    async def refused() -> None:
        server = _FakeServer(0, refuse="permission_denied")
        got = _result(await run_transaction(server.put, add_one, 0, 25))
        expect_equal((got[0], got[2]), ("permission_denied", 0), "(status, retries)")
        expect_equal(len(server.puts), 1, "number of puts")
        expect_equal(got[1], 0, "the value returned with a refusal (`current`, unchanged)")

    async def aborted() -> None:
        server = _FakeServer(7)
        got = _result(await run_transaction(server.put, lambda n: ABORT, 7, 25))
        expect_equal(got, ("aborted", 7, 0), "(status, value, retries)")
        expect_equal(server.puts, [], "puts sent for an aborted transaction")

    results = [
        await acheck("no contention: one put, with the hash of the current value", no_contention,
                     "put(new, value_hash(current)) with new = function(current)."),
        await acheck("datastale: run the function again on the value the server sent", stale_once,
                     "on 'retry', current = the data of the answer, retries + 1, and loop."),
        await acheck("stale every time: 'maxretry' after max_retries retries", gives_up,
                     "let next_step decide; stop when it says 'maxretry'."),
        await acheck("another refusal: stop at once with that status", refused,
                     "'fail' ends the loop: return the server's status."),
        await acheck("the function returns ABORT: nothing is sent", aborted,
                     "check for ABORT before calling put; return ('aborted', current, retries)."),
    ]
    return summary(results, "run_transaction")


# --------------------------------------------------------------------------- (4) a rule

_ADA, _BOB = {"uid": "ada"}, {"uid": "bob"}
_LIST = {"todos": {"a1": {"text": "milk", "by": "ada"}, "b1": {"text": "eggs", "by": "bob"}}}


def _case(path: str, value: Any, auth: Any, allowed: bool) -> tuple:
    return path, value, auth, allowed


_RULE_CASES = [
    ("ada adds an item signed by herself", _case("todos/a2", {"text": "tea", "by": "ada"}, _ADA, True),
     "a new item (no data yet) whose newData.child('by') is auth.uid may be written."),
    ("ada ticks her own item", _case("todos/a1/done", True, _ADA, True),
     "a rule on $id sees the whole item in data and newData, even for a write below it."),
    ("ada deletes her own item", _case("todos/a1", None, _ADA, True),
     "after a delete newData does not exist: allow it when data is the author's."),
    ("nobody signed in: refused", _case("todos/x", {"text": "hi", "by": "ada"}, None, False),
     "auth is null when nobody is signed in: require auth != null."),
    ("ada adds an item signed by bob: refused", _case("todos/a3", {"text": "hi", "by": "bob"}, _ADA, False),
     "the new data must be signed by the writer: newData.child('by').val() == auth.uid."),
    ("bob deletes ada's item: refused", _case("todos/a1", None, _BOB, False),
     "the existing data must be the writer's: data.child('by').val() == auth.uid."),
    ("bob takes ada's item over (by: bob): refused", _case("todos/a1", {"text": "mine", "by": "bob"}, _BOB, False),
     "check data (the item before) as well as newData (after)."),
    ("bob empties the whole list: refused", _case("todos", None, _BOB, False),
     "no .write on todos itself: a grant there would cascade to every item."),
    ("an item whose text is not a string: refused", _case("todos/a4", {"text": 42, "by": "ada"}, _ADA, False),
     "a .validate on $id: newData.child('text').isString()."),
    ("an item of more than 100 characters: refused", _case("todos/a5", {"text": "x" * 101, "by": "ada"}, _ADA, False),
     "newData.child('text').val().length <= 100."),
]


def check_todo_rules(todo_rules: Callable[[], dict]) -> bool:
    """Check the rules ``todo_rules()`` returns, with :func:`course.wire.rules.can_write`."""
    compiled: list = []
    failed: list[BaseException] = []

    def compiles() -> None:
        try:
            spec = todo_rules()
        except NotImplementedError as error:  # a stub: the other cases say so too, without hints
            failed.append(error)
            raise
        expect(isinstance(spec, dict), f"todo_rules() must return a dict, got {type(spec).__name__}")
        try:
            compiled.append(compile_rules(spec))
        except RulesError as error:
            raise AssertionError(f"the rules do not compile: {error}") from None

    results = [check("the rules compile", compiles, "a dict {'rules': {'todos': {...}}}; expressions are strings.")]

    def compiled_rules():
        if failed:
            raise failed[0]
        expect(bool(compiled), "the rules did not compile")
        return compiled[0]

    def readable() -> None:
        rules = compiled_rules()
        for auth in (None, _BOB):
            expect(bool(can_read(rules, "todos", root=_LIST, auth=auth)),
                   f"reading todos as {auth} is refused; everybody may read the list")

    results.append(check("everybody may read the list", readable, "'.read': True on todos."))
    for name, (path, value, auth, allowed), hint in _RULE_CASES:
        def test(path=path, value=value, auth=auth, allowed=allowed) -> None:
            rules = compiled_rules()
            new_root = remove(_LIST, path) if value is None else set_at(_LIST, path, value)
            decision = can_write(rules, path, old_root=_LIST, new_root=new_root, auth=auth)
            expect(bool(decision) == allowed,
                   f"{'refused' if allowed else 'allowed'}, it should be {'allowed' if allowed else 'refused'} "
                   f"({decision.reason})")
        results.append(check(name, test, hint))
    return summary(results, "todo rules")
