"""Chapter 1: five ways to get server events to a client, measured on real sockets.

One :class:`~course.demo.news.NewsSource` emits headlines at random instants.  Five
strategies deliver them to a client, each through a real server on ``127.0.0.1``
(aiohttp) and a real client (aiohttp, or the ``websockets`` library for WebSocket):

- ``reload``: the client GETs a full HTML page every ``reload_interval`` s;
- ``polling``: AJAX short polling, ``GET /events?since=N`` every ``poll_interval`` s;
- ``long-polling``: ``GET /events?since=N&wait=S``; the server holds the request until an
  event exists (or ``S`` s pass); the client asks again at once;
- ``sse``: Server-Sent Events, one ``text/event-stream`` response that never ends;
- ``websocket``: one WebSocket; the server pushes, the client streams acks *up*.

Between each client and its server sits the course's TCP relay
(:class:`course.net.relay.Relay`), which counts every byte both ways (request lines,
headers, bodies, chunk sizes, WebSocket frames: everything TCP carries; TCP/IP headers
themselves are not counted).  The server counts HTTP requests.  The client computes
delivery latency = receipt instant - ``Event.t`` (same ``perf_counter_ns`` clock: one
process).

The modules, from the bottom up:

- :mod:`~course.measure.transports.config`: the strategy names and :class:`Settings`;
- :mod:`~course.measure.transports.page`: the HTML page of the ``reload`` strategy;
- :mod:`~course.measure.transports.server`: :class:`EventServer`, the five endpoints;
- :mod:`~course.measure.transports.clients`: the five clients and their ``Collector``;
- :mod:`~course.measure.transports.report`: ``Result``, ``table`` and ``plot``;
- :mod:`~course.measure.transports.trial`: ``measure_all``, ``run_strategy`` and
  ``capture_empty_poll`` (server, relay and client, started and stopped together);
- :mod:`~course.measure.transports.__main__`: the command line.

In a notebook (the kernel's loop is running, so ``await`` directly)::

    results = await measure_all(duration=10, seed=1)
    print(table(results))
    plot(results)

Command line::

    python -m course.measure.transports           # a table
    python -m course.measure.transports --json    # one JSON object per strategy
"""
