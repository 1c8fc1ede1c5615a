"""Demo data for the live chapters: seeded feeds of news, clock ticks and prices.

Everything is deterministic for a given seed, so the notebooks' outputs are stable.
:func:`format_event` turns one message into the line the feed widget shows.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

from course.wire.envelope import Kind

__all__ = ["HEADLINES", "SYMBOLS", "PUSH_KINDS", "news_feed", "clock_feed", "price_feed",
           "demo_events", "format_event", "noise"]

PUSH_KINDS = frozenset({Kind.NEWS, Kind.CLOCK, Kind.PRICE})  #: what a push server sends

HEADLINES = [
    "RFC 6455 turns fifteen",
    "Browsers agree on WebSocket close codes",
    "Polling declared harmful by tired servers",
    "Full duplex spotted in the wild",
    "Ping and pong keep the connection alive",
    "Masking keys foil proxy cache poisoning",
    "Server-Sent Events wave from across the street",
    "Chat app scales to three whole users",
]
SYMBOLS = ["ACME", "GLOBEX", "INITECH"]


def news_feed(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``n`` news headlines in a seeded, reproducible order."""
    rng = random.Random(seed)
    for _ in range(n):
        yield {"type": Kind.NEWS.value, "text": rng.choice(HEADLINES)}


def clock_feed(n: int, start: int = 9 * 3600, step: int = 1) -> Iterator[dict[str, Any]]:
    """``n`` ticks of a fictional clock (``HH:MM:SS``), ``step`` seconds apart."""
    for i in range(n):
        t = (start + i * step) % 86400
        yield {"type": Kind.CLOCK.value, "time": f"{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}"}


def price_feed(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``n`` prices from a seeded random walk, in whole cents."""
    rng = random.Random(seed)
    cents = {symbol: 10000 + 2500 * i for i, symbol in enumerate(SYMBOLS)}
    for _ in range(n):
        symbol = rng.choice(SYMBOLS)
        cents[symbol] = max(1, cents[symbol] + rng.randint(-150, 150))
        yield {"type": Kind.PRICE.value, "symbol": symbol, "price": cents[symbol] / 100}


def demo_events(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` events mixing news, clock ticks and prices, numbered ``seq`` 1..n.

    The same ``(n, seed)`` always gives the same list.
    """
    rng = random.Random(seed)
    sources = {
        Kind.NEWS: news_feed(n, seed),
        Kind.CLOCK: clock_feed(n),
        Kind.PRICE: price_feed(n, seed),
    }
    kinds = list(sources)
    events = []
    for seq in range(1, n + 1):
        event = dict(next(sources[rng.choice(kinds)]))
        event["seq"] = seq
        events.append(event)
    return events



_PUSHED_LINES = {  # the pushed kinds, one column each: "#03 price  ACME 101.25"
    Kind.NEWS.value: "news   {text}",
    Kind.CLOCK.value: "clock  {time}",
    Kind.PRICE.value: "price  {symbol} {price:.2f}",
}
_PUSHED_FIELDS = {  # what each pushed kind must carry to be shown
    Kind.NEWS.value: {"text": str},
    Kind.CLOCK.value: {"time": str},
    Kind.PRICE.value: {"symbol": str, "price": (int, float)},
}


def _bad_fields(message: dict[str, Any]) -> list[str]:
    return [name for name, kind in _PUSHED_FIELDS[message["type"]].items()
            if not isinstance(message.get(name), kind) or isinstance(message.get(name), bool)]


def format_event(message: dict[str, Any]) -> str:
    """One human-readable line for a message (what the feed widget shows).

    Timing fields (``sent_ns``) are left out so that the line is deterministic.  Never
    raises on what a peer sent: a known type with missing or mistyped fields (say
    ``{"type": "news"}`` relayed by the hub) gives a line that says so.
    """
    kind = message.get("type")
    if kind in _PUSHED_LINES:
        seq = message.get("seq")
        prefix = f"#{seq:02d} " if isinstance(seq, int) and not isinstance(seq, bool) else ""
        bad = _bad_fields(message)
        if bad:
            return prefix + f"{kind:<6} (malformed: missing or invalid {', '.join(bad)})"
        return prefix + _PUSHED_LINES[kind].format(**{name: message[name] for name in _PUSHED_FIELDS[kind]})
    if kind == Kind.ACK:
        return f"server: {message.get('text', '')}"
    if kind == Kind.ERROR:
        return f"server error ({message.get('code', '?')}): {message.get('error', '')}"
    if kind == Kind.CHAT:
        return f"chat: {_clip(str(message.get('text', '')))}"
    return json.dumps(message, sort_keys=True)


def _clip(text: str, limit: int = 16) -> str:
    return text if len(text) <= limit else f"{text[:limit - 1]}… ({len(text)} chars)"


def noise(size: int, seed: int = 0) -> str:
    """``size`` characters of seeded random text (incompressible, for load tests).

    Raises:
        ValueError: negative ``size``.
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    rng = random.Random(seed)
    return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=size))
