"""Formats above the frames, sans-I/O: the message envelope, the chat's messages,
Server-Sent Events, the RFC examples."""
