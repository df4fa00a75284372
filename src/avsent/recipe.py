"""Model recipes: data naming the component in each slot, nothing else.

A recipe is a partial run config in the same shape as the TOML file, e.g.::

    Recipe(
        description="the paper's model",
        config={"audio": {"name": "drsn"}, "video": {"name": "i3dd"}, "fusion": {"name": "cma"}},
    )

so choosing a recipe and editing a config file are the same act.
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


def recipe_config(name: str) -> dict[str, Any]:
    """The partial config a registered recipe stands for."""
    recipe = get_registry().get("recipe", name).obj
    return dict(recipe.config)
