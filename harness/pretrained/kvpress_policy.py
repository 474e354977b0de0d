"""Any kvpress press as a memory policy: the context is compressed while it is read, in one pass.

kvpress (NVIDIA, an optional dependency: ``pip install memarena[kvpress]``) registers forward
hooks on the attention layers that compress the cache during the pre-filling pass, the pass
that reads the context from position 0. This policy reads the context in that one pass under
``press(model)``; the question and the answer are then read without compression, at their
absolute positions after the whole context, as kvpress's own pipeline does. Options: ``press``,
the name of a press class exported by kvpress (``StreamingLLMPress``, ``SnapKVPress``,
``KnormPress``, ...), and ``press_options``, its keyword arguments (say
``{"compression_ratio": 0.5}``); a press that wraps another (``KeyRerotationPress``) takes
``{"press": {"name": ..., "options": {...}}}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from harness.config import KvPressOptions
from harness.pretrained.policies import Policy, register_policy


def build_press(name: str, options: dict[str, Any]):
    """The kvpress press ``name`` with ``options`` (a nested {"name", "options"} builds an inner press)."""
    try:
        import kvpress
    except ImportError as error:
        raise ValueError("memory policy 'kvpress' needs the kvpress package: pip install 'memarena[kvpress]' "
                         f"({error})") from None
    press_class = getattr(kvpress, name, None)
    if not isinstance(press_class, type) or not issubclass(press_class, kvpress.BasePress):
        known = sorted(item for item in dir(kvpress) if item.endswith("Press"))
        raise ValueError(f"memory policy 'kvpress': kvpress has no press {name!r}; its presses: {', '.join(known)}")
    options = {key: build_press(value["name"], value.get("options", {})) if isinstance(value, dict) else value
               for key, value in options.items()}
    return press_class(**options)


@register_policy("kvpress")
@dataclass
class KvPress(Policy, KvPressOptions):
    whole_context: ClassVar[bool] = True

    def check(self) -> None:
        self.instance = build_press(self.press, dict(self.press_options))

    @classmethod
    def options_for_budget(cls, budget: int, options: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("memory policy 'kvpress': a press compresses by a ratio, not to a number of positions; "
                         "leave policy.budget null and set policy.press_options.compression_ratio")

    def context(self, model: nn.Module):
        return self.instance(model)
