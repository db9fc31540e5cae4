"""An example emu-dgl plugin: each component in a module of its own, each found by emu-dgl
through the entry point of its kind (pyproject.toml), none imported before a config names it."""
