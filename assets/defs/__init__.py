"""The Dagster layer of the data plane, training and evaluation: thin asset wrappers only.

Holds ``keys`` (every asset key and group, once), ``resources`` (the data store, the hub),
``partitions``, ``pools``, ``metadata`` (Dagster metadata from plain values) and one module per
stage: ``sources``, ``chatml``, ``video``, ``tokens``, ``packing``, ``mixture``, ``model``,
``checkpoint``, ``benchmarks``, ``evaluation``, ``lmms_eval``, ``leaderboard``.
``pipelines/definitions.py`` loads every asset found in this package (no hand-written list).
May import everything under ``assets``, ``training`` and ``eval``; nothing imports it but
``pipelines``.

To add a stage's asset, add a module here that defines it (keys and group in ``keys``); the
automation policy is by group (``pipelines/automation.py``).
"""
