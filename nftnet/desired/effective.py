"""The effective config: what `apply -f` declared, plus what runtime commands changed.

Rules, documented in the README ("Runtime changes and apply"):
- runtime networks, runtime endpoints and ports published at runtime survive `apply -f`;
- `apply -f` makes everything its file declares true again, so a declared port unpublished
  at runtime comes back;
- a file that declares a name already taken at runtime is refused (exit 2).
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

from nftnet.config.load import parse_config
from nftnet.config.model import Config, Origin
from nftnet.errors import ConfigError
from nftnet.records import config_entry, owner


def merge(declared: dict[str, Any], runtime: dict[str, Any]) -> dict[str, Any]:
    """The effective config (file format) of a declared config and the runtime changes."""
    out = copy.deepcopy(declared)
    networks = out.setdefault("networks", {}) or {}
    endpoints = out.setdefault("endpoints", {}) or {}
    out["networks"], out["endpoints"] = networks, endpoints
    clashes = [f"networks.{n}: network {n} was created at runtime " + _by(
        e, "nftnet network rm it first") for n, e in runtime["networks"].items() if n in networks]
    clashes += [f"endpoints.{n}: endpoint {n} was attached at runtime " + _by(
        e, "nftnet endpoint detach it first") for n, e in runtime["endpoints"].items()
        if n in endpoints]
    if clashes:
        raise ConfigError(clashes)
    networks.update({n: config_entry(e) for n, e in runtime["networks"].items()})
    for name, ep in runtime["endpoints"].items():
        endpoints[name] = config_entry(ep)
    for name, specs in runtime["publish"].items():
        if name in endpoints:
            endpoints[name]["publish"] = [*(endpoints[name].get("publish") or []), *specs]
    for name, specs in runtime["unpublish"].items():
        if name in endpoints:
            endpoints[name]["publish"] = [p for p in endpoints[name].get("publish") or []
                                          if p not in specs]
    return out


def _by(entry: dict[str, Any], fix: str) -> str:
    """Who made a runtime entry, for a clash: a driver (whose runtime removes it), or people
    (``fix`` says how)."""
    holder = owner(entry)
    return f"by {holder}, which holds it" if holder else f"({fix})"


def after_apply(runtime: dict[str, Any], declared: dict[str, Any]) -> dict[str, Any]:
    """Runtime changes as they stand once a new file is applied: unpublishing of declared
    ports is forgotten, and ports published on endpoints the file dropped go with them."""
    kept = copy.deepcopy(runtime)
    kept["unpublish"] = {}
    names = set(declared.get("endpoints") or {}) | set(kept["endpoints"])
    kept["publish"] = {k: v for k, v in kept["publish"].items() if k in names}
    return kept


def effective_config(declared: dict[str, Any], runtime: dict[str, Any],
                     origin: Origin | None = None) -> Config:
    """The config the kernel should hold: the declared file plus runtime changes. ``origin``,
    the declared file's, locates problems of its user_rules (runtime changes have none)."""
    config = parse_config(json.dumps(merge(declared, runtime)), "config + runtime changes")
    return replace(config, origin=origin)
