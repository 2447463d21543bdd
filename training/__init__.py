"""The GPU extension job, plain Python that knows Dagster only through ``dagster_pipes``.

Holds ``config`` (TrainConfig, validated before any model load), ``recipes`` and ``plan``
(which stage starts from what), ``modeling`` (loading, freezing, attention), ``collator`` and
``data`` (packed sequences -> batches), ``loss``, ``optim``, ``trainer``, ``ds`` (DeepSpeed),
``ulysses`` (sequence parallelism), ``distributed``, ``state`` (resumable state), ``report``
(stdout and Pipes), ``launch`` (python / torchrun / deepspeed command lines), ``tiny_model``,
``processor``, and ``positions/`` (position-extension methods). May import ``assets``' stage
and contract packages; runnable alone: ``python -m training --config run.json``.

To add a training option, touch ``config.TrainConfig`` (and ``recipes`` if recipes set it).
"""
