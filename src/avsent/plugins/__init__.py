"""The shipped plugins. Each module is an ``avsent`` entry point in pyproject.toml and is
loaded through the same path as a third party's; the core never imports this package."""
