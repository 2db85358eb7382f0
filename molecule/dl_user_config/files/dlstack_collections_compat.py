"""Restore the ABC aliases in `collections` that Keras 2.3.1 imports (removed in Python 3.10)."""
import collections
import collections.abc

for _name in ("Callable", "Iterable", "Mapping", "MutableMapping", "Sequence"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))
