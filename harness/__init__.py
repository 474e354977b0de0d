"""memarena: benchmark long-context memory mechanisms for language models head to head.

Public API::

    harness.mechanisms()                  # sorted registered mechanism names
    harness.tasks()                       # sorted registered task names
    harness.build_model(name, vocab_size=..., d_model=..., n_layers=..., n_heads=..., **options)
    harness.build_task(name, **options)
"""

from harness.build import build_model, build_task, mechanisms, tasks

__all__ = ["build_model", "build_task", "mechanisms", "tasks"]
