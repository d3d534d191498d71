"""Benchmarks of i2e_lightning: converter speed, ODG, training, memory, fidelity, paper tables.

Run them from the repository root, e.g. ``python -m benchmarks.converter --json out.json``
(or ``python -m i2e_lightning bench converter``); ``docs/BENCHMARKS.md`` lists every command.
"""
