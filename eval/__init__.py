"""Benchmark harnesses, plain Python (no Dagster): loaders for each benchmark's published
format, the inference runner, answer parsing, scoring and effective-length analysis, the
leaderboard, and the optional lmms-eval bridge.

Layout:

* ``items``       the one normalised item every loader produces, and the prediction schema;
* ``benchmarks``  the registry: hub id, published files, media, loader and embedded generator;
* ``formats``     published rows -> items, one function per benchmark (prompts as lmms-eval);
* ``haystack``    Visual Haystack: choosing/subsampling the published files, and the offline
                  needle-task generator;
* ``embedded``    generators of local samples in the other benchmarks' published layouts;
* ``fetch``       ``datasets.load_dataset`` on a hub id or the local sample (same code path);
* ``runner``      checkpoint loading with its position method, batched greedy generation;
* ``parsing``     yes/no and option-letter answer parsing;
* ``scoring``     accuracy per split, MME scores, Visual Haystack curve and effective length;
* ``leaderboard`` rows, markdown table, plots, short-context regression check;
* ``lmms``        lmms-eval: results parser, command line, and the model plugin.
"""
