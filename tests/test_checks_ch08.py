"""The chapter 8 self-checks: ❌ on stubs and on plausible wrong answers, ✅ only on correct ones.

The correct answers are the library's own functions (:mod:`course.wire.dbevents`,
:mod:`course.wire.pushid`, :mod:`course.wire.transaction`), or written here as the solution
notebook writes them (the transaction loop and the rules: the library's loop expects a ``put`` that
raises on refusals, the exercise's returns the status).
"""

from __future__ import annotations

import pytest

from check_lines import failing, run, stub
from course.checks.ch08 import (check_child_events, check_next_push_id, check_next_step,
                                check_run_transaction, check_todo_rules)
from course.net.dbclient import ABORT
from course.wire import dbevents, pushid, transaction
from course.wire.dbevents import DbEvent, Kind
from course.wire.pushid import PUSH_CHARS
from course.wire.transaction import value_hash



async def astub(*args, **kwargs):
    raise NotImplementedError()


def assert_stub(ok_: bool, cases: dict[str, str], count: int) -> None:
    assert not ok_ and len(failing(cases)) == count == len(cases)
    assert all("not implemented yet" in line and "Hint" not in line for line in cases.values())


def assert_wrong(ok_: bool, cases: dict[str, str], case: str) -> None:
    assert not ok_
    assert case in failing(cases), cases
    assert "Hint:" in cases[case]


# --------------------------------------------------------------------------- (1) child events

def ce_added_first(path, old, new):
    events = dbevents.child_events(path, old, new)
    return sorted(events, key=lambda e: e.kind is not Kind.CHILD_ADDED)


def ce_no_removed(path, old, new):
    return [e for e in dbevents.child_events(path, old, new) if e.kind is not Kind.CHILD_REMOVED]


def ce_plain_sorted(path, old, new):
    old_c = old if isinstance(old, dict) else {}
    new_c = new if isinstance(new, dict) else {}
    order = sorted(new_c)
    before = {k: order[i - 1] if i else None for i, k in enumerate(order)}
    return ([DbEvent(Kind.CHILD_REMOVED, path, k, old_c[k]) for k in sorted(old_c) if k not in new_c]
            + [DbEvent(Kind.CHILD_ADDED, path, k, new_c[k], before[k]) for k in order if k not in old_c]
            + [DbEvent(Kind.CHILD_CHANGED, path, k, new_c[k], before[k]) for k in order
               if k in old_c and old_c[k] != new_c[k]])


def ce_previous_from_old(path, old, new):
    old_order = dbevents.sorted_keys(old if isinstance(old, dict) else {})
    out = []
    for e in dbevents.child_events(path, old, new):
        if e.kind is Kind.CHILD_CHANGED:
            i = old_order.index(e.key)
            e = DbEvent(e.kind, e.path, e.key, e.value, old_order[i - 1] if i else None)
        out.append(e)
    return out


def ce_removed_without_value(path, old, new):
    return [DbEvent(e.kind, e.path, e.key, None, e.previous) if e.kind is Kind.CHILD_REMOVED else e
            for e in dbevents.child_events(path, old, new)]


def ce_changed_always(path, old, new):
    old_c, new_c = old or {}, new or {}
    extra = [DbEvent(Kind.CHILD_CHANGED, path, k, new_c[k], None) for k in new_c
             if k in old_c and old_c[k] == new_c[k]]
    return dbevents.child_events(path, old, new) + extra


def ce_leaf_crash(path, old, new):
    old.keys(), new.keys()  # a leaf (or None) has no .keys()
    return dbevents.child_events(path, old, new)


def test_child_events_solution_passes(capsys):
    ok_, cases = run(check_child_events(dbevents.child_events), capsys)
    assert ok_ and not failing(cases) and len(cases) == 10


def test_child_events_stub_fails_without_hints(capsys):
    assert_stub(*run(check_child_events(stub), capsys), 10)


@pytest.mark.parametrize("wrong, case", [
    (ce_added_first, "removed first, then added, then changed"),
    (ce_no_removed, "a child that is gone: child_removed with its old value"),
    (ce_plain_sorted, "keys that are numbers sort as numbers, before the others"),
    (ce_previous_from_old, "previous is the key before, in the new snapshot"),
    (ce_removed_without_value, "a child that is gone: child_removed with its old value"),
    (ce_changed_always, "an unchanged snapshot raises nothing"),
    (ce_leaf_crash, "a leaf that becomes an object: its children are added"),
])
def test_child_events_wrong_answers_fail(wrong, case, capsys):
    assert_wrong(*run(check_child_events(wrong), capsys), case)


# --------------------------------------------------------------------------- (2) push ids

def _time(now_ms, reverse=True):
    chars = []
    for _ in range(8):
        chars.append(PUSH_CHARS[now_ms % 64])
        now_ms //= 64
    return "".join(reversed(chars) if reverse else chars)


def pid_little_endian(now_ms, last_ms, last_random, rng):
    push_id, digits = pushid.next_push_id(now_ms, last_ms, last_random, rng)
    return _time(now_ms, reverse=False) + push_id[8:], digits


def pid_always_random(now_ms, last_ms, last_random, rng):
    return pushid.next_push_id(now_ms, None, last_random, rng)


def pid_no_carry(now_ms, last_ms, last_random, rng):
    if now_ms != last_ms:
        return pushid.next_push_id(now_ms, last_ms, last_random, rng)
    digits = list(last_random)
    digits[-1] += 1  # 63 + 1 = 64: out of the alphabet
    return _time(now_ms) + "".join(PUSH_CHARS[d] for d in digits), digits


def pid_base64_alphabet(now_ms, last_ms, last_random, rng):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"  # not ASCII-ordered
    push_id, digits = pushid.next_push_id(now_ms, last_ms, last_random, rng)
    return "".join(alphabet[PUSH_CHARS.index(c)] for c in push_id), digits


def pid_no_overflow_check(now_ms, last_ms, last_random, rng):
    if now_ms == last_ms and all(d == 63 for d in last_random):
        return _time(now_ms) + "-" * 12, [0] * 12
    return pushid.next_push_id(now_ms, last_ms, last_random, rng)


def pid_no_range_check(now_ms, last_ms, last_random, rng):
    return pushid.next_push_id(now_ms % 64 ** 8, last_ms, last_random, rng)


def test_push_id_solution_passes(capsys):
    ok_, cases = run(check_next_push_id(pushid.next_push_id), capsys)
    assert ok_ and not failing(cases) and len(cases) == 7


def test_push_id_stub_fails_without_hints(capsys):
    assert_stub(*run(check_next_push_id(stub), capsys), 7)


@pytest.mark.parametrize("wrong, case", [
    (pid_little_endian, "the first 8 characters are the time in base 64, most significant first"),
    (pid_always_random, "the same millisecond: the previous digits plus one"),
    (pid_no_carry, "plus one carries: 63 becomes 0 and the digit before goes up"),
    (pid_base64_alphabet, "20 characters of PUSH_CHARS; the last 12 are the digits"),
    (pid_base64_alphabet, "1010 ids over three milliseconds: all different, sorted = created"),
    (pid_no_overflow_check, "ValueError: now_ms out of [0, 64**8), or the digits overflow"),
    (pid_no_range_check, "ValueError: now_ms out of [0, 64**8), or the digits overflow"),
])
def test_push_id_wrong_answers_fail(wrong, case, capsys):
    assert_wrong(*run(check_next_push_id(wrong), capsys), case)


# --------------------------------------------------------------------------- (3) transactions

def step_ok(status, retries, max_retries=25):
    return transaction.next_step(status, retries, max_retries).value


def step_off_by_one(status, retries, max_retries=25):
    return step_ok(status, retries - 1, max_retries) if status == "datastale" else step_ok(status, retries, max_retries)


def step_retries_everything(status, retries, max_retries=25):
    return step_ok("datastale" if status != "ok" else status, retries, max_retries)


def step_ignores_bound(status, retries, max_retries=25):
    return step_ok(status, 0, max_retries)


def step_default_bound(status, retries, max_retries=25):
    return step_ok(status, retries, 25)


def test_next_step_solution_passes(capsys):
    ok_, cases = run(check_next_step(step_ok), capsys)
    assert ok_ and not failing(cases) and len(cases) == 8


def test_next_step_enum_passes_too(capsys):
    ok_, _ = run(check_next_step(transaction.next_step), capsys)
    assert ok_


def test_next_step_stub_fails_without_hints(capsys):
    assert_stub(*run(check_next_step(stub), capsys), 8)


@pytest.mark.parametrize("wrong, case", [
    (step_off_by_one, "datastale after 25 retries: give up (maxretry)"),
    (step_retries_everything, "permission_denied: fail, never retry"),
    (step_ignores_bound, "datastale after 25 retries: give up (maxretry)"),
    (step_default_bound, "with max_retries=0, the first datastale gives up"),
])
def test_next_step_wrong_answers_fail(wrong, case, capsys):
    assert_wrong(*run(check_next_step(wrong), capsys), case)


async def tx_solution(put, function, current, max_retries=25):
    """As the solution notebook writes it."""
    retries = 0
    while True:
        new = function(current)
        if new is ABORT:
            return "aborted", current, retries
        status, data = await put(new, value_hash(current))
        step = step_ok(status, retries, max_retries)
        if step == "done":
            return "ok", new, retries
        if step == "fail":
            return status, current, retries
        if step == "maxretry":
            return "maxretry", current, retries
        current, retries = data, retries + 1


async def tx_hash_of_new(put, function, current, max_retries=25):
    retries = 0
    while True:
        new = function(current)
        status, data = await put(new, value_hash(new))
        if status == "ok" or retries >= max_retries or status != "datastale":
            return (status if retries < max_retries else "maxretry"), new, retries
        current, retries = data, retries + 1


async def tx_keeps_old_value(put, function, current, max_retries=25):
    retries = 0
    while True:
        new = function(current)
        if new is ABORT:
            return "aborted", current, retries
        status, data = await put(new, value_hash(current))
        step = step_ok(status, retries, max_retries)
        if step != "retry":
            return ("ok" if step == "done" else "maxretry" if step == "maxretry" else status), current, retries
        retries += 1  # forgets data: runs on the stale value again


async def tx_unbounded_tries(put, function, current, max_retries=25):
    return await tx_solution(put, function, current, max_retries + 1)


async def tx_retries_refusals(put, function, current, max_retries=25):
    retries = 0
    while True:
        new = function(current)
        if new is ABORT:
            return "aborted", current, retries
        status, data = await put(new, value_hash(current))
        if status == "ok":
            return "ok", new, retries
        if retries >= max_retries:
            return "maxretry", current, retries
        retries += 1
        current = data if status == "datastale" else current


async def tx_sends_abort(put, function, current, max_retries=25):
    return await tx_solution(put, lambda v: None if function(v) is ABORT else function(v), current, max_retries)


async def tx_loops_on_refusals(put, function, current, max_retries=25):
    """Retries only count on datastale: a refusal loops for ever (it hung the check once)."""
    retries = 0
    while True:
        new = function(current)
        if new is ABORT:
            return "aborted", current, retries
        status, data = await put(new, value_hash(current))
        if status == "ok":
            return "ok", new, retries
        if status == "datastale":
            if retries >= max_retries:
                return "maxretry", current, retries
            current = data
            retries += 1


async def tx_gives_up_with_new(put, function, current, max_retries=25):
    status, value, retries = await tx_solution(put, function, current, max_retries)
    return status, (function(value) if status == "maxretry" else value), retries


async def tx_refused_with_data(put, function, current, max_retries=25):
    status, value, retries = await tx_solution(put, function, current, max_retries)
    return status, ("refused by the rules" if status == "permission_denied" else value), retries


def test_run_transaction_solution_passes(capsys):
    ok_, cases = run(check_run_transaction(tx_solution), capsys)
    assert ok_ and not failing(cases) and len(cases) == 5


def test_run_transaction_stub_fails_without_hints(capsys):
    assert_stub(*run(check_run_transaction(astub), capsys), 5)


@pytest.mark.parametrize("wrong, case", [
    (tx_hash_of_new, "no contention: one put, with the hash of the current value"),
    (tx_keeps_old_value, "datastale: run the function again on the value the server sent"),
    (tx_unbounded_tries, "stale every time: 'maxretry' after max_retries retries"),
    (tx_retries_refusals, "another refusal: stop at once with that status"),
    (tx_sends_abort, "the function returns ABORT: nothing is sent"),
    (tx_loops_on_refusals, "another refusal: stop at once with that status"),
    (tx_gives_up_with_new, "stale every time: 'maxretry' after max_retries retries"),
    (tx_refused_with_data, "another refusal: stop at once with that status"),
])
def test_run_transaction_wrong_answers_fail(wrong, case, capsys):
    assert_wrong(*run(check_run_transaction(wrong), capsys), case)


# --------------------------------------------------------------------------- (4) the rule

VALID = ("newData.hasChildren(['text', 'by']) && newData.child('text').isString()"
         " && newData.child('text').val().length <= 100")
OWNER = ("auth != null && (!data.exists() || data.child('by').val() == auth.uid)"
         " && (!newData.exists() || newData.child('by').val() == auth.uid)")


def rules_with(write: str | None = OWNER, validate: str | None = VALID, list_write=None):
    item = {}
    if write is not None:
        item[".write"] = write
    if validate is not None:
        item[".validate"] = validate
    todos = {".read": True, "$id": item}
    if list_write is not None:
        todos[".write"] = list_write
    return lambda: {"rules": {"todos": todos}}


def test_rules_solution_passes(capsys):
    ok_, cases = run(check_todo_rules(rules_with()), capsys)
    assert ok_ and not failing(cases) and len(cases) == 12


def test_rules_stub_fails_without_hints(capsys):
    assert_stub(*run(check_todo_rules(stub), capsys), 12)


def test_rules_that_do_not_compile_fail_with_the_reason(capsys):
    ok_, cases = run(check_todo_rules(rules_with(write="auth.uid = 'ada'")), capsys)
    assert not ok_ and "the rules do not compile" in cases["the rules compile"]


@pytest.mark.parametrize("wrong, case", [
    (rules_with(list_write="auth != null"), "bob empties the whole list: refused"),
    (rules_with(list_write="auth != null"), "bob deletes ada's item: refused"),
    (rules_with(write="auth != null && newData.child('by').val() == auth.uid"), "ada deletes her own item"),
    (rules_with(write="auth != null && newData.child('by').val() == auth.uid"),
     "bob takes ada's item over (by: bob): refused"),
    (rules_with(write="auth != null && (!data.exists() || data.child('by').val() == auth.uid)"),
     "ada adds an item signed by bob: refused"),
    (rules_with(write="!data.exists() || data.child('by').val() == auth.uid"), "nobody signed in: refused"),
    (rules_with(validate="newData.hasChildren(['text', 'by'])"), "an item whose text is not a string: refused"),
    (rules_with(validate="newData.child('text').isString()"), "an item of more than 100 characters: refused"),
])
def test_rules_wrong_answers_fail(wrong, case, capsys):
    assert_wrong(*run(check_todo_rules(wrong), capsys), case)
