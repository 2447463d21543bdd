"""ChatML normalisation: a fetched source's rows -> conversations in the contract, or
rejections with a reason (``normalize``).

May import ``assets.contract`` and ``assets.sources``. A new check on conversations goes in
``normalize.validate_messages``; a new rejection reason needs nothing else.
"""
