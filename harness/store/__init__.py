"""The store (``results/``): run records written atomically (``records``), their schema (``schema``)
and trained weights (``weights``). The report reads the store; the store imports no engine.
"""
