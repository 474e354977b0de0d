"""The engine: a run flows plan -> train -> evaluate -> store, and sweeps launch runs.

Nothing outside the engine (layers, task kit, store, report) imports it; import-linter checks this.
"""
