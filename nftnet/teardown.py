"""``nftnet teardown``: remove what nftnet made, and nothing else.

Links go first and nftnet's table last, so that no container is reachable without the firewall
in between at any moment: runtime endpoints' veths, the bridges nftnet created (those the state
lists that still carry link.model.MARK: adopted ones stay), IP forwarding where nftnet switched it
on, then table inet nftnet and the state. The user chain's rules are saved to a file before
anything is removed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nftnet import names
from nftnet.desired.links import FORWARD_KEYS
from nftnet.errors import NftnetError
from nftnet.kernel import Kernel
from nftnet.link.model import MARK
from nftnet.nft.backend import TABLE_SPEC
from nftnet.nft.objects import Table
from nftnet.nft.transaction import Transaction
from nftnet.records import made_veth
from nftnet.state import StateDir, create_file


@dataclass
class Plan:
    table: bool
    state: bool
    veths: list[str] = field(default_factory=list)
    bridges: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # links --keep-bridges leaves
    keep_links: bool = False  # --keep-bridges
    # bridges the state lists that lack nftnet's mark (bridges.MARK): not nftnet's, kept
    unmarked: list[str] = field(default_factory=list)
    forwarding: list[int] = field(default_factory=list)
    user_rules: list[str] = field(default_factory=list)  # nft syntax, in chain order

    @property
    def empty(self) -> bool:
        return not (self.table or self.state or self.veths or self.bridges or self.forwarding)

    def lines(self, state_dir: StateDir) -> list[str]:
        out = [f"  veths of runtime endpoints: {' '.join(self.veths)}"] if self.veths else []
        out += [f"  bridges nftnet created: {' '.join(self.bridges)}"] if self.bridges else []
        out += [f"  IPv{v} forwarding, which nftnet switched on: back off"
                for v in self.forwarding]
        if self.table:
            out.append(f"  {TABLE_SPEC}, with the {len(self.user_rules)} rule(s) of its user "
                       "chain (saved to a file first)")
        out += [f"  nftnet's state in {state_dir.path}"] if self.state else []
        if self.kept:
            out.append(f"kept (--keep-bridges): {' '.join(self.kept)}; containers on them are "
                       "no longer firewalled by nftnet")
        if self.unmarked:
            out.append(f"kept: {' '.join(self.unmarked)}, listed in the state as made by "
                       f"nftnet but without its mark (ifalias {MARK!r}): nftnet did "
                       "not make them, or a version before the mark did")
        return out


def plan(state_dir: StateDir, kernel: Kernel, keep_links: bool) -> Plan:
    """What teardown would remove, as the state and the kernel say now, with the links and
    forwarding of a change a killed command left pending. Call with the lock."""
    pending = state_dir.pending()
    states = [s for s in pending or (state_dir.load(),) if s is not None]
    rules = kernel.nft.chain_rules_text(names.USER_CHAIN)
    out = Plan(table=kernel.nft.list(TABLE_SPEC) is not None, state=bool(states),
               keep_links=keep_links, user_rules=[text for _, text in rules or []])
    if not states:
        return out
    links = kernel.links.observe()
    out.veths = sorted({veth for s in states for ep in s.runtime["endpoints"].values()
                        if (veth := made_veth(ep)) and veth in links})
    # a pending change records bridges before it makes them: a link of that name since made
    # by someone else is no bridge of nftnet's; a listed bridge without nftnet's mark stays
    listed = sorted({b for s in states for b in s.created_bridges
                     if b in links and links[b].kind == "bridge"})
    out.bridges = [b for b in listed if links[b].marked]
    out.unmarked = [b for b in listed if not links[b].marked]
    if keep_links:
        out.kept, out.veths, out.bridges = out.bridges + out.veths, [], []
    enabled = {int(v) for s in states for v, on in s.forwarding_enabled.items() if on}
    out.forwarding = [v for v in sorted(enabled)
                      if kernel.links.read_sysctl(FORWARD_KEYS[v]) == "1"]
    return out


def save_user_rules(rules: list[str], directory: Path) -> Path:
    """Write the rules as an nft script that puts them back (after a new nftnet apply)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(100):
        path = directory / f"nftnet-user-chain-{stamp}{f'-{n}' if n else ''}.nft"
        try:
            create_file(path, f"# The rules of chain {names.TABLE_REF} "
                        f"{names.USER_CHAIN}, saved by nftnet teardown at {stamp}.\n"
                        "# After a new `nftnet apply`, put them back with: nft -f THIS_FILE\n"
                        + "".join(f"add rule {names.TABLE_REF} {names.USER_CHAIN} "
                                  f"{r}\n" for r in rules))
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise NftnetError(f"cannot save the user chain's rules to {path}: {e.strerror}; "
                              "nothing removed") from None
    raise NftnetError(f"cannot find a free file name in {directory}; nothing removed")


def execute(plan: Plan, state_dir: StateDir, kernel: Kernel) -> list[str]:
    """Remove what ``plan`` lists, links first; every step is tried, and the state is kept
    (so that teardown can run again) if any failed."""
    problems: list[str] = []

    def attempt(step: Callable[[], object]) -> None:
        try:
            step()
        except NftnetError as e:
            problems.append(str(e))

    kept: list[str] = []
    for name in plan.veths:
        attempt(lambda name=name: kernel.links.detach_veth(name))
    attempt(lambda: kept.extend(kernel.links.delete_links(plan.bridges)))
    for v in plan.forwarding:
        attempt(lambda v=v: kernel.links.write_sysctl(FORWARD_KEYS[v], "0"))
    if plan.table:
        tx = Transaction()
        tx.delete(Table())
        attempt(lambda: kernel.nft.run(tx.to_json()))
    if problems:
        raise NftnetError("teardown stopped short; the state is kept, so that it can run "
                          "again:\n" + "\n".join(problems))
    out = [f"kept {' '.join(kept)}: no longer marked as nftnet's"] if kept else []
    if not state_dir.remove():
        return [*out, f"removed; kept {state_dir.path}, which holds files that are not nftnet's"]
    return [*out, "removed"]
