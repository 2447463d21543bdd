"""Position-extension methods: what a method does to M-RoPE, and how a model gets it.

Holds ``rope`` (per-pair inverse frequencies: none, base, PI, NTK, YaRN, M-RoPE++, each a
registered function), ``v2pe`` (variable visual position increments), ``apply`` (a method on
a loaded model, saved in its config), ``packed`` (position ids of packed sequences) and ``cli``
(``giraffe rope``). May import ``assets.contract`` and ``assets.video``.

To add a frequency method, touch ``rope`` (one ``@method`` function) plus its test: the config
validation, the CLI and the recipes read the registry.
"""
