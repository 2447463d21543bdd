"""Sources: the registry of the ETVLM sources, their schema adapters, hub fetching and the
embedded samples.

Holds ``registry`` (one ``SourceSpec`` per source: category, hub repo and files, media, adapter,
sample generator), ``adapters`` (a source's record -> ChatML messages), ``hub`` (``datasets``
/ ``huggingface_hub`` fetching, archives, media layout check), ``records`` (the record-by-record
reader for files ``datasets`` fails on, columns of mixed type), ``owned`` (the folders the
pipeline may replace: stamped, nothing foreign), ``errors`` (which fetch failures are
transient), ``declared`` (datasets declared in ``GIRAFFE_DATASETS``: our YAML or LLaMA-Factory's
``dataset_info.json``, as ``SourceSpec``s), ``embedded/`` (the offline samples in each repo's
layout). May import ``assets.contract``.

To add a source, touch ``registry`` (its entry), ``adapters`` (its schema) and
``embedded/samples`` (its offline sample): three files, plus its test. A user's own dataset
needs no code: an entry in the file ``GIRAFFE_DATASETS`` names (docs/datasets.md).
"""
