"""What tasks build on: the task contract (``task``), text tasks, haystacks, vocabularies, the
example cache and answer scoring. A task imports from here and from ``harness.registry``, nothing
else of harness.
"""
