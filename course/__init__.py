"""Real-time web with WebSockets: reusable code for the course notebooks.

Layers, from the bytes up (each knows nothing of the ones above it):

- ``course.protocol``: RFC 6455, sans-I/O (bytes in, bytes out, no sockets).
- ``course.rawserver``: an asyncio echo server built only on ``course.protocol``.
- ``course.transports``: five ways to get server events to a client, measured.
- ``course.live`` / ``course.chat``: servers built on the ``websockets`` library.
- ``course.widgets``: ipywidgets that show what the servers do (no frames here).
- ``course.checks``: the notebooks' self-checks.
- ``course.tools``: notebook toolchain (execute, exercises, navigation, lint).
"""
