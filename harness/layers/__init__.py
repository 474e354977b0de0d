"""What baselines build on: the mechanism contract (``mechanism``), the streaming model wrapper
(``model``) and the layers mechanisms share (blocks, rotary, masks, relative attention, causal
convolutions). A baseline imports from here and from ``harness.registry``, nothing else of harness.
"""
