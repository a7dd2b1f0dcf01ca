"""The proof that an ``apply -f`` of a file would change nothing, checked without reading the
file as a config: no validation, no compiling, no marshmallow.

A full apply that leaves the kernel, the links and the state exactly as a file declares
records (``StateDir.save_applied``) a digest of the file's text and of nftnet's own code (and
compat's, which translates ``iptables:`` user_rules), the identity of the state files
(``StateDir.identity``), the ruleset generation, the families whose IP forwarding the config
needs, and a digest of the links it needs (its bridges and runtime veths,
``desired.links.bridge_specs``) as they were, settled.
The same text applied again changes nothing while all of these hold: the state files are
those it recorded (no runtime change, no other apply since; no change pending), the kernel's
generation is the recorded one (no commit since, by anyone), forwarding is on and those links
are as they were. Anything else, or anything unreadable, takes the full path, which records
the proof again.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from typing import TYPE_CHECKING

from nftnet.desired.links import FORWARD_KEYS
from nftnet.link import model as link_model

if TYPE_CHECKING:
    from nftnet.kernel import Kernel
    from nftnet.state import StateDir


@cache
def _code() -> bytes:
    """The code that reads a config as it is installed: every module's path, size and mtime of
    nftnet and of compat beside it (same distribution: its rule-language plugin translates
    ``iptables:`` user_rules), so that an upgrade (or an edit) voids every proof recorded
    before it. Cheaper than reading the version from the package's metadata, whose import
    alone costs more than the check."""
    here = os.path.dirname(os.path.abspath(__file__))
    parts = []
    for root in (here, os.path.join(os.path.dirname(here), "compat")):
        for where, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(f for f in files if f.endswith(".py")):
                st = os.stat(os.path.join(where, name))
                parts.append(f"{os.path.relpath(where, os.path.dirname(here))}/{name}:"
                             f"{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts).encode()


def fingerprint(text: str) -> str:
    """The digest of a config file's text, as nftnet's code reads it."""
    digest = hashlib.sha256(_code())
    digest.update(b"\0")
    digest.update(text.encode())
    return digest.hexdigest()


def links_digest(names: list[str], links: dict[str, link_model.LinkState]) -> str:
    """A digest of what ``link_model.settled`` reads of ``links`` for bridges and ports of
    ``names``: links identical in it to links that were settled are settled too."""
    facts = []
    for name in names:
        seen = links.get(name)
        facts.append(None if seen is None else (
            name, seen.index, seen.up, seen.kind, sorted(seen.addresses), seen.master,
            seen.hairpin, seen.marked))
    return hashlib.sha256(repr(facts).encode()).hexdigest()


def link_names(specs: list[link_model.BridgeSpec]) -> list[str]:
    """The links ``settled`` looks at for ``specs``: each bridge and the veths on it."""
    return [name for spec in specs for name in (spec.name, *spec.ports)]


def record(state_dir: StateDir, digest: str, generation: str | None,
           specs: list[link_model.BridgeSpec], links: dict[str, link_model.LinkState],
           families: list[int]) -> None:
    """Record the proof for the file of ``digest``, once the state is final (call with the
    lock held) and the bridges as ``specs`` say in ``links``; nothing where the generation is
    unknown (it would prove nothing) or the links are not settled."""
    identity = state_dir.identity()
    if generation is None or identity is None or not link_model.settled(specs, links):
        return
    names = link_names(specs)
    state_dir.save_applied({"digest": digest, "state": identity, "generation": generation,
                            "forwarding": families, "links": names,
                            "links_digest": links_digest(names, links)})


def unchanged(state_dir: StateDir, kernel: Kernel, digest: str) -> bool:
    """Whether an apply of the file of ``digest`` would change nothing, proven by the record;
    False whenever it cannot be proven (then the full apply decides)."""
    with state_dir.locked():
        proof = state_dir.applied()
        if proof is None or proof.get("digest") != digest:
            return False
        try:
            families, names = list(proof["forwarding"]), list(proof["links"])
            recorded, want = proof["generation"], proof["links_digest"]
            if any(kernel.links.read_sysctl(FORWARD_KEYS[v]) == "0" for v in families):
                return False
        except (KeyError, TypeError):  # a record not as ``record`` writes it: proves nothing
            return False
        # the generation: the state's and the kernel's, as nftnet left them
        if state_dir.generation() != recorded or kernel.generation() != recorded:
            return False
        return links_digest(names, kernel.links.observe()) == want
