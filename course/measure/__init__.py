"""Measurement: statistics, latency, and the transports experiment of chapter 1."""
