"""A plugin whose import fails, as when its own dependency is missing."""

raise ImportError("broken-flyteauth needs libbroken>=2")
