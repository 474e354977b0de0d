"""Name -> class registries for mechanisms and tasks.

A component registers itself with a decorator at import time; the registry imports every module
of its home package (``baselines`` or ``tasks``) the first time it is asked for names, so adding a
component is one file (plus its YAML) and nothing else is edited. Installed packages add
components through entry points (groups ``memarena.mechanisms`` and ``memarena.tasks``), whose
values are modules to import (``my_package.my_mechanism``) or the registered classes themselves.
Each registered class carries a ``Config`` dataclass, which is also stored in Hydra's ConfigStore
as ``schema/<group>/<name>`` so that YAML files can extend it and overrides are type-checked.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from dataclasses import is_dataclass
from typing import Callable, Generic, TypeVar

from hydra.core.config_store import ConfigStore

T = TypeVar("T", bound=type)


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str, group: str):
        self.kind = kind
        self.package = package
        self.group = group
        self._classes: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(cls: T) -> T:
            config = getattr(cls, "Config", None)
            if config is None or not is_dataclass(config):
                raise TypeError(f"{self.kind} {name!r}: class {cls.__name__} needs a dataclass `Config`")
            if getattr(config, "name", None) != name:
                raise TypeError(f"{self.kind} {name!r}: {config.__name__}.name must default to {name!r}")
            previous = self._classes.get(name)
            if previous is not None and previous.__qualname__ != cls.__qualname__:
                raise ValueError(f"{self.kind} {name!r} is registered twice ({previous} and {cls})")
            self._classes[name] = cls
            cls.name = name
            ConfigStore.instance().store(group=f"schema/{self.group}", name=name, node=config)
            return cls

        return decorator

    def discover(self) -> None:
        """Import every module of the home package and every plug-in so that their decorators run."""
        if self._discovered:
            return
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{self.package}.{module.name}")
        for entry_point in importlib.metadata.entry_points(group=self.entry_point_group):
            try:
                entry_point.load()
            except Exception as error:
                raise ImportError(f"{self.kind} plug-in {entry_point.name!r} ({entry_point.value}, group "
                                  f"{self.entry_point_group}) failed to load: {type(error).__name__}: {error}") from error
        self._discovered = True

    @property
    def entry_point_group(self) -> str:
        return f"memarena.{self.group}s"

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._classes)

    def get(self, name: str) -> T:
        self.discover()
        try:
            return self._classes[name]
        except KeyError:
            known = ", ".join(self.names())
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None


MECHANISMS: Registry = Registry("mechanism", package="baselines", group="mechanism")
TASKS: Registry = Registry("task", package="tasks", group="task")

register_mechanism = MECHANISMS.register
register_task = TASKS.register
