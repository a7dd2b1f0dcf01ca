"""A test hook: ``NFTNET_CRASH_AT=POINT`` makes nftnet SIGKILL itself the first time it reaches
POINT, so that tests kill a command at each step of a change instead of by timing
(tests/kernel/test_kill_points.py). The variable is read once, at import: unset, a point costs
one comparison.

The points, in the order a change reaches them (a runtime change of one endpoint skips those
of links it does not touch; a full change is apply, network create and rm, restore, and the
completion of an interrupted change):
  temp:FILE         the temp file of FILE is written and synced, FILE not yet replaced (FILE:
                    state.next.json, change.pending.json, state.json, generation)
  wrote:FILE        FILE replaced by it
  bridges-created   the batch creating bridges is sent; addresses and "up" are not
  links             bridges in place
  sysctls           their sysctls and IP forwarding set
  veth-made         a runtime endpoint's veth made and configured
  nft-before        just before the nftables commit
  nft-after         just after it
  links-removed     the veths and bridges the change deletes are gone
  renamed           state.next.json renamed over state.json (full change)
  journal-appended  a runtime change appended to changes.jsonl, change.pending.json still there
  pending-removed   change.pending.json removed (runtime change), the generation not yet saved
"""

from __future__ import annotations

import os

ENV = "NFTNET_CRASH_AT"
_AT = os.environ.get(ENV)


def point(name: str) -> None:
    """Die here, at once and without cleaning up, if the test hook names this point."""
    if name == _AT:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
