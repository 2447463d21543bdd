"""Ratio mixing: whole packed sequences chosen to reach the ETVLM token shares (``mix``), and
the stage's data card (``data_card``).

May import ``assets.contract`` and ``assets.packing``. Category shares come from
``assets.contract.categories``.
"""
