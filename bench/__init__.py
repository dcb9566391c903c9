"""Benchmarks for the pipeline against its own emulator in a separate process.

Run from the repository root: ``python -m bench <scenario>`` or ``python -m bench all``;
see bench/README.md. This package imports only the standard library, so the bench process
stays small: a child's ru_maxrss starts at its parent's footprint (Linux copies the parent's
peak into the child at fork/exec), and data generation therefore runs in its own subprocess.
"""
