"""Video: 2 fps sampling, hybrid resolution and the frame store.

Holds ``grid`` (Qwen2-VL's factors, pixel budgets, smart_resize, HybridConfig), ``plan``
(which frames at what size, from metadata alone), ``hybrid`` (two sizes per group of temporal
patches), ``decode`` (decord and ffmpeg reading, resizing, transcoding), ``pipe`` (the ffmpeg
select pipe), ``inputs`` (pixel values and video tokens for the model), ``frames`` (the frame
store: shards, videos and samples tables, and their join). May import ``assets.contract``.

To change the sampling rule, touch ``plan``; a new decoder goes in ``decode`` (checked against
decord there); settings users set live in ``plan.VideoSamplingConfig`` (the Dagster config in
``assets/defs/video.py`` is built from it).
"""
