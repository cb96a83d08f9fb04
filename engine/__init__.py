"""Satchel's core: sans-IO state objects, the journal, and the trio runtime around them.

The engine never imports ``adapters`` or ``plugins``: adapters use the public
client API (``engine.runtime.Engine``), plugins the hook specs
(``engine.hookspecs``).
"""
