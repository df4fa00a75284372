"""Model recipes: data naming the component in each slot, nothing else.

A recipe is a partial run config in the same shape as the TOML file, e.g.::

    Recipe(
        description="the paper's model",
        config={"audio": {"name": "drsn"}, "video": {"name": "i3dd"}, "fusion": {"name": "cma"}},
    )

so choosing a recipe and editing a config file are the same act. A recipe may derive from
another (``base``): it is then the base recipe with its own ``config`` laid over it by the
one slot-merge rule (:func:`avsent.config.merge`). The Table 5 ablations are such derived
recipes, and ``avsent reproduce`` lays the same ``config`` over whichever base it is given.
"""

from __future__ import annotations

from typing import Any

import attrs

from avsent.registry import get_registry


@attrs.frozen
class Recipe:
    description: str
    config: dict[str, Any] = attrs.field(factory=dict)
    #: where the recipe comes from (e.g. "Table 5: w/o CMA"), shown by ``avsent components``
    reference: str = ""
    #: the recipe this one changes (``config`` is then only the change)
    base: str | None = None


def get_recipe(name: str) -> Recipe:
    """The registered recipe ``name``; an unknown name lists the available ones."""
    return get_registry().get("recipe", name).obj
