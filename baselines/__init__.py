"""Memory mechanisms, one per file; each registers itself with ``harness.registry.register_mechanism``."""
