"""Drivers: container runtimes that drive nftnet (``nftnet daemon``).

Each driver keeps its runtime's data model to itself: a pure translation of the runtime's
objects into what nftnet must hold, a pure decision table for its events, and small I/O
modules (the runtime's API client, the checks before it may start).
"""
