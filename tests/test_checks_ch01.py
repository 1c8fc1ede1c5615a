"""course.checks.ch01: every check fails (❌, no exception) on stubs and wrong code, passes on right code."""

from __future__ import annotations

import asyncio

import pytest

from course.checks.ch01 import check_header_bytes, check_long_poll


def run(coro, timeout: float = 90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.strip()]


# ----------------------------------------------------------------------------- header_bytes

def header_bytes_right(message: bytes) -> int:
    return message.index(b"\r\n\r\n") + 4


def header_bytes_stub(message: bytes) -> int:
    raise NotImplementedError()


def header_bytes_last_blank_line(message: bytes) -> int:
    return message.rindex(b"\r\n\r\n") + 4


def header_bytes_without_separator(message: bytes) -> int:
    return message.index(b"\r\n\r\n")


def header_bytes_find(message: bytes) -> int:  # -1 + 4 = 3 when there is no blank line
    return message.find(b"\r\n\r\n") + 4


def header_bytes_crash(message: bytes) -> int:
    return message.decode().index(1)


def test_header_bytes_right_passes(capsys):
    assert check_header_bytes(header_bytes_right) is True
    out = lines(capsys)
    assert out and all(line.startswith("✅") for line in out), out


@pytest.mark.parametrize("wrong", [header_bytes_stub, header_bytes_last_blank_line,
                                   header_bytes_without_separator, header_bytes_find,
                                   header_bytes_crash])
def test_header_bytes_wrong_fails_without_raising(capsys, wrong):
    assert check_header_bytes(wrong) is False
    out = lines(capsys)
    assert any(line.startswith("❌") for line in out), out
    assert out[-1].startswith("❌ header_bytes:")
    assert "Traceback" not in "\n".join(out)


def test_header_bytes_stub_says_not_implemented(capsys):
    check_header_bytes(header_bytes_stub)
    out = lines(capsys)
    assert all("not implemented yet" in line and "Hint" not in line for line in out[:-1]), out


# ----------------------------------------------------------------------------- long_poll

async def long_poll_right(session, url, since, count, wait=10.0):
    events = []
    while len(events) < count:
        async with session.get(url, params={"since": since, "wait": wait}) as response:
            response.raise_for_status()
            batch = await response.json()
        events += batch
        if batch:
            since = batch[-1]["id"]
    return events[:count]


async def long_poll_stub(session, url, since, count):
    raise NotImplementedError()


async def long_poll_busy(session, url, since, count):  # short polling with no pause
    events = []
    while len(events) < count:
        async with session.get(url, params={"since": since}) as response:
            response.raise_for_status()
            batch = await response.json()
        events += batch
        if batch:
            since = batch[-1]["id"]
    return events[:count]


async def long_poll_stops_on_empty(session, url, since, count):
    events = []
    while len(events) < count:
        async with session.get(url, params={"since": since, "wait": 10}) as response:
            response.raise_for_status()
            batch = await response.json()
        if not batch:
            return events
        events += batch
        since = batch[-1]["id"]
    return events[:count]


async def long_poll_ignores_since(session, url, since, count):
    events = []
    while len(events) < count:
        async with session.get(url, params={"since": 0, "wait": 10}) as response:
            response.raise_for_status()
            events += await response.json()
    return events[:count]


async def long_poll_sleepy(session, url, since, count):  # polls every second
    events = []
    while len(events) < count:
        async with session.get(url, params={"since": since}) as response:
            response.raise_for_status()
            batch = await response.json()
        events += batch
        if batch:
            since = batch[-1]["id"]
        else:
            await asyncio.sleep(1)
    return events[:count]


async def long_poll_ignores_errors(session, url, since, count):
    events = []
    while len(events) < count:
        async with session.get(url, params={"since": since, "wait": 10}) as response:
            batch = await response.json()
        if isinstance(batch, list):
            events += batch
            if batch:
                since = batch[-1]["id"]
    return events[:count]


async def long_poll_overshoots(session, url, since, count):  # keeps the whole last answer
    events = []
    while len(events) < count:
        async with session.get(url, params={"since": since, "wait": 10}) as response:
            response.raise_for_status()
            batch = await response.json()
        events += batch
        if batch:
            since = batch[-1]["id"]
    return events


def test_long_poll_overshoot_is_named(capsys):
    assert run(check_long_poll(long_poll_overshoots)) is False
    failed = [line for line in lines(capsys) if line.startswith("❌") and "count" in line]
    assert any("returned 8 events for count=3" in line and "Hint:" in line for line in failed), failed


def test_long_poll_stub_gives_no_hint(capsys):
    assert run(check_long_poll(long_poll_stub)) is False
    out = lines(capsys)
    assert all("not implemented yet" in line and "Hint" not in line for line in out[:-1]), out


def test_long_poll_right_passes(capsys):
    assert run(check_long_poll(long_poll_right)) is True
    out = lines(capsys)
    assert len(out) == 8 and all(line.startswith("✅") for line in out), out


@pytest.mark.parametrize("wrong, failing", [
    (long_poll_stub, 7),
    (long_poll_overshoots, 1),
    (long_poll_busy, 1),
    (long_poll_stops_on_empty, 1),
    (long_poll_ignores_since, 6),
    (long_poll_sleepy, 2),
    (long_poll_ignores_errors, 1),
])
def test_long_poll_wrong_fails_without_raising(capsys, wrong, failing):
    assert run(check_long_poll(wrong)) is False
    out = lines(capsys)
    assert len(out) == 8, out
    assert sum(line.startswith("❌") for line in out[:-1]) >= failing, out
    assert out[-1].startswith("❌ long_poll:")
    assert "Traceback" not in "\n".join(out)
