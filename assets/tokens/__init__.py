"""Token counting: the exact length of every sample with the base model's processor (``count``).

May import ``assets.contract`` and ``assets.video`` (video tokens come from the frame plans).
"""
