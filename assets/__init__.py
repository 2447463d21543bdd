"""Dagster assets of the GIRAFFE pipeline and the plain functions behind them.

Each stage keeps its logic in plain modules (testable without Dagster) and exposes a thin
``@dg.asset`` wrapper in a module named after the stage (``sources``, ``chatml``, ...).
"""
