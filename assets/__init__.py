"""The data plane of the GIRAFFE pipeline: one package per stage, and the Dagster layer above.

Layers (tests/test_layers.py enforces them; DESIGN.md section 2):

* ``contract/``  what every stage shares: the conversation schema, media resolution, the chat
                 template, text cleaning, every data-root path (``layout``), markdown/PNG helpers;
* ``sources/``, ``chatml/``, ``video/``, ``tokens/``, ``packing/``, ``mixture/``: one package of
                 plain functions per stage (no Dagster), in the order the data flows;
* ``defs/``      the only Dagster code here: asset keys and groups (``keys``), resources,
                 partitions, and one module of thin ``@dg.asset`` wrappers per stage.

A stage package may import ``contract`` and the stages before it; ``training`` and ``eval``
may import the stages; only ``defs`` (and ``pipelines``) import Dagster.
"""
