"""Benchmark harnesses, plain Python (no Dagster).

Holds ``benchmarks/`` (one module per benchmark carrying its loader, embedded generator,
scoring and leaderboard columns), ``items`` (the normalised item and prediction schemas),
``formats`` (fetch options, the load context and cell helpers every loader shares),
``embedded`` (drawing and parquet helpers the samples share), ``fetch`` (hub or embedded,
same ``datasets`` code path), ``runner`` (a checkpoint with its position method, batched
generation or likelihood scoring), ``parsing``, ``scoring`` (accuracy per split, the Visual
Haystack curve and effective length), ``leaderboard`` (rows, table, regression check) and
``lmms`` / ``lmms_pipes`` / ``lmms_plugin`` (lmms-eval). May import ``assets``' stage and
contract packages and ``training``.

To add a benchmark, add a module to ``benchmarks/`` (see its package docstring).
"""
