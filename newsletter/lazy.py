"""Modules imported by a library we use, for a part of it we never call."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types


class _Deferred(types.ModuleType):
    """Stands in sys.modules for a module until something uses it, then hands over to it."""

    def __getattr__(self, attribute: str):  # called only for what the stand-in lacks
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attribute)


def defer_import(name: str) -> None:
    """Make `import name` cheap until an attribute of the module is used.

    premailer imports `requests` (some 60 ms of every command's start-up) only to fetch
    external stylesheets, which our settings forbid. The stand-in has a finished
    `__spec__`, so an `import` statement accepts it as it is; the first attribute asked of
    it imports the real module, which from then on is the one in sys.modules."""
    if name in sys.modules or importlib.util.find_spec(name) is None:
        return  # already there, or not installed: the import says so, as it would have
    stand_in = _Deferred(name)
    stand_in.__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules[name] = stand_in
