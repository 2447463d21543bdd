"""The shared contract of every stage: what a conversation, a media path and a rendered
sample are, and where things live under the data root.

Holds ``conversation`` (schemas, sample ids, rejections), ``categories``, ``media`` (resolving
and checking image paths), ``chat_template`` (+ ``templates/``), ``cleaning`` (special tokens
and stray characters), ``layout`` (every data-root path), ``markdown`` (tables and PNGs for
people), ``atomic`` (every output through a temporary sibling and one rename), ``quality`` (the
mass-rejection rule of the ``no_mass_rejection`` checks). Imports nothing from the project: everything else stands on it.

To add a data-root path, touch ``layout``; to add a category, ``categories`` (the mixture's
shares and config follow).
"""
