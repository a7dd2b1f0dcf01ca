"""The pure desired-state layer: what the kernel and the links should hold, computed from the
validated config and nftnet's records, with no I/O (tests/unit/test_layers.py enforces it)."""
