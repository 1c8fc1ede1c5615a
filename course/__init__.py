"""Real-time web with WebSockets: the code the course notebooks import.

Arranged by layer, from the bytes up; a layer imports only from the layers above it
in this list (``tests/test_layers.py`` checks it):

- ``course.protocol``: RFC 6455, sans-I/O (bytes in, events and bytes out; no sockets).
- ``course.wire``: formats above the frames, sans-I/O: the message ``envelope`` every
  JSON server speaks, the ``chat`` messages, Server-Sent Events (``sse``), the RFC
  examples as data (``rfc``), Phoenix Channels' V2 frames (``phoenix``), Phoenix
  Presence (``presence``), the channel router of one connection (``channels``) and
  Action Cable's frames and commands (``actioncable``), Socket.IO's packets over
  Engine.IO (``socketio``).
- ``course.demo``: seeded demo data (the news source, the feeds of chapter 3).
- ``course.net``: asyncio: the ``lifecycle`` every server and relay shares, the raw
  server and client, the ``relay``, the ``websockets`` handlers, the ``fanout`` queues,
  the ``hub`` and the ``chat``, chapter 5's ``channels`` server (rooms shared by every
  protocol, Phoenix on top; Action Cable by ``actioncable`` and Socket.IO by
  ``socketio_bridge``, mounted on it), its kernel client (``channels_client``), the
  ``messenger`` (the course page's Exemple: that server plus a page on Phoenix's official
  client) and a real python-socketio exchange recorded through the relay
  (``socketio_capture``).
- ``course.measure``: statistics, latency, the transports experiment of chapter 1.
- ``course.ui``: what the notebook shows: widgets, the in-page browser client, frame
  display, the kernel's ``chat_widget``, static files (the vendored Phoenix client in
  ``static/vendor/``).  ``widgets`` imports no sockets and no frames.
- ``course.checks``: the notebooks' self-checks (one module per exercise notebook).

The notebook toolchain (execute, exercises, navigation, lint) is not part of the
package: it is the repository's top-level ``tools/``.
"""
