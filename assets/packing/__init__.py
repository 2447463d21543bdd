"""Packing: best-fit decreasing without truncation (``kernel``, numba with a pure-Python twin)
and a stage's packing with its audits (``stage``: strata, deferrals, no sample lost, fill).

May import ``assets.contract``. A new audit goes in ``stage`` and is reported by
``assets/defs/packing.py``.
"""
