"""Who holds each host binding: the one port-clash rule.

A host port is published once per host address, family and protocol; a binding to every
address (a wildcard) clashes with every binding of that port, and a binding to one address
with the wildcard. The config check, the runtime commands and the state's index all ask
``PortIndex``, so the rule is written here only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from nftnet.config.model import PortMapping, PublishSpec


def binding_key(m: PortMapping) -> str:
    """One host binding: family, host address ("*" for every address), protocol, port."""
    return f"{m.family}|{m.host_ip if m.host_ip is not None else '*'}|{m.proto}|{m.host_port}"


def wildcard_key(m: PortMapping) -> str:
    """The binding of ``m``'s port to every address of its family."""
    return f"{m.family}|*|{m.proto}|{m.host_port}"


def holder_name(endpoint: str, spec: PublishSpec) -> str:
    return f"endpoint {endpoint} ({spec.text})"


def clash_message(m: PortMapping, holder: str) -> str:
    host = m.host_ip if m.host_ip is not None else "every address"
    return (f"{m.proto} port {m.host_port} on {host} (IPv{m.family}) is already published by "
            f"{holder}")


@dataclass
class PortIndex:
    """Host bindings and their holders, as the state keeps them (plain JSON-able dicts).

    ``ports``: binding key -> holder; ``specific``: wildcard key -> holders of bindings to
    one address on that port (what a new wildcard clashes with); ``changed``: (index name,
    key) of every entry changed since it was built, so that a runtime change journals only
    those.
    """

    ports: dict[str, str] = field(default_factory=dict)
    specific: dict[str, list[str]] = field(default_factory=dict)
    changed: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def of(cls, published: Iterable[tuple[str, PublishSpec, PortMapping]]) -> PortIndex:
        """The index of a config's published ports (``Config.published``), which the config
        check has proved free of clashes."""
        index = cls()
        for name, spec, m in published:
            index.claim(m, holder_name(name, spec))
        index.changed.clear()
        return index

    def holder(self, m: PortMapping) -> str | None:
        """Who holds a binding that ``m`` clashes with; None when ``m`` is free."""
        key = binding_key(m)
        if m.host_ip is None:
            return self.ports.get(key) or next(iter(self.specific.get(key, ())), None)
        return self.ports.get(key) or self.ports.get(wildcard_key(m))

    def claim(self, m: PortMapping, holder: str) -> None:
        """Record ``m`` as held by ``holder`` (check ``holder(m)`` first)."""
        key = binding_key(m)
        self.ports[key] = holder
        self.changed.add(("ports", key))
        if m.host_ip is not None:
            port = wildcard_key(m)
            self.specific[port] = [*self.specific.get(port, ()), holder]
            self.changed.add(("specific", port))

    def release(self, m: PortMapping) -> None:
        """Forget the binding ``m``; a binding nobody holds is no error."""
        key = binding_key(m)
        holder = self.ports.pop(key, None)
        self.changed.add(("ports", key))
        port = wildcard_key(m)
        holders = self.specific.get(port, [])
        if m.host_ip is not None and holder in holders:
            rest = [h for h in holders if h != holder]
            if rest:
                self.specific[port] = rest
            else:
                del self.specific[port]
            self.changed.add(("specific", port))
