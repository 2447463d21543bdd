"""The Dagster code location and the ``giraffe`` command line: thin wiring only.

Holds ``definitions`` (assets found in ``assets.defs``, jobs, schedules, sensors, resources),
``jobs``, ``automation`` (the policy, by group), ``schedules``, ``instance`` (the project's
Dagster instance folder) and the CLI (``cli`` and one ``*_cli`` module per sub-command). May
import everything; nothing imports it.

To add a job, touch ``jobs``; a sub-command, a ``*_cli`` module registered in ``cli``.
"""
