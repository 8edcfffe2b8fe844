"""Plugins: packages that add rewards or model adapters to the registries without the framework
importing them.

A plugin is a module listed under the ``fastvideo.plugins`` entry-point group of an installed
distribution; importing it registers what it provides (``register_reward``, ``register_adapter``).
The registries call ``load_plugins()`` the first time a name is missing, so a config can name a
plugin's reward (e.g. the shapes lab's ``shapes_verifier``) while the framework stays free of it::

    [project.entry-points."fastvideo.plugins"]
    shapes = "fastvideo.shapes.rewards"
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

logger = logging.getLogger("fastvideo")

GROUP = "fastvideo.plugins"
_loaded: list[str] | None = None


def load_plugins() -> list[str]:
    """Import every ``fastvideo.plugins`` entry point once; returns the imported module names.

    A plugin that fails to import is skipped with a warning (its names then stay unknown, and the
    registry's error lists what is available).
    """
    global _loaded
    if _loaded is not None:
        return list(_loaded)
    _loaded = []
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        try:
            importlib.import_module(point.value.split(":")[0])
        except Exception as err:  # noqa: BLE001 - a broken plugin must not break the framework
            logger.warning("plugin %s (%s) failed to import: %s", point.name, point.value, err)
            continue
        _loaded.append(point.value)
    return list(_loaded)
