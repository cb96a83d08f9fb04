"""Loading jurisdiction plugins and the read-only views hooks receive."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

import attrs
import pluggy

from engine import hookspecs


class PluginError(ValueError):
    """A plugin named in the config cannot be loaded."""


@attrs.frozen
class AccountProfile:
    """What a hook may know about an account."""

    account_id: int
    parent_id: int
    country: str
    category: str


def plugin_manager(enabled: Iterable[str]) -> pluggy.PluginManager:
    """A plugin manager with the named plugins registered, in config order.

    A name is an importable module (``plugins.eu``) or ``module:attribute``.
    """
    pm = pluggy.PluginManager("satchel")
    pm.add_hookspecs(hookspecs)
    for name in enabled:
        module_name, _, attr = name.partition(":")
        try:
            plugin = importlib.import_module(module_name)
            if attr:
                plugin = getattr(plugin, attr)
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"plugins.enabled: cannot load {name!r}: {exc}") from None
        pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugins.enabled: {exc}") from None
    return pm


def manifest(pm: pluggy.PluginManager) -> list[list[str]]:
    """(name, version) of each registered plugin, for the journal's genesis record."""
    out = []
    for name, plugin in pm.list_name_plugin():
        version = getattr(plugin, "__version__", "")
        out.append([name or "", str(version)])
    return sorted(out)
