"""Drivers: container runtimes that drive nftnet (``nftnet daemon --docker``, ``nftnet-cni``),
each a thin adapter on the engine facade (``nftnet.api``).

Each driver keeps its runtime's data model to itself: a pure translation of the runtime's
objects into what nftnet must hold, pure decisions (events, the spec's plumbing), and small
I/O modules (the runtime's API client, the checks before it may start).
"""
