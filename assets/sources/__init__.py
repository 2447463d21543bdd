"""Sources: the registry of the ETVLM sources, their schema adapters, hub fetching and the
embedded samples.

Holds ``registry`` (one ``SourceSpec`` per source: category, hub repo and files, media, adapter,
sample generator), ``adapters`` (a source's record -> ChatML messages), ``hub`` (``datasets``
/ ``huggingface_hub`` fetching, archives, stamped sample generation), ``embedded/`` (the
offline samples in each repo's layout). May import ``assets.contract``.

To add a source, touch ``registry`` (its entry), ``adapters`` (its schema) and
``embedded/samples`` (its offline sample): three files, plus its test.
"""
