"""Benchmarks of nanobanana-async against the simulator, side by side with a hand-written client.

Run ``python -m benchmarks`` from the repository root; see ``python -m benchmarks --help``.
"""
