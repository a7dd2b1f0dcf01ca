"""Errors that end a command, each with the exit code a script can rely on.

0 ok; 1 runtime or kernel failure; 2 invalid input (the caller's config or arguments); 3 an
unexpected bug (the traceback goes to the log, not the screen); 130 interrupted.
"""

from __future__ import annotations

import reprlib

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_INVALID = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 130


class NftnetError(Exception):
    """Base of every error nftnet reports to the user instead of a traceback."""

    exit_code = EXIT_RUNTIME


class ConfigError(NftnetError):
    """The input is wrong; carries one message per offending field, each naming its path.

    The message lists the first ``SHOWN_PROBLEMS``: a generated file can be wrong 50,000 times.
    """

    exit_code = EXIT_INVALID
    SHOWN_PROBLEMS = 100

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = problems[:self.SHOWN_PROBLEMS]
        if len(problems) > len(lines):
            lines.append(f"... and {len(problems) - len(lines)} more problems")
        super().__init__("\n".join(lines))


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60


def shown(value: object) -> str:
    """``value`` as a message quotes it: its repr, cut short (one string of a config may hold
    megabytes, one list thousands of levels)."""
    return _SHOWN.repr(value)


class TransactionError(NftnetError):
    """The kernel (or libnftables) refused a batch; nothing of it was applied."""


class LinkError(NftnetError):
    """A bridge, address or sysctl could not be set up."""


class StateError(NftnetError):
    """The state directory could not be read, written or locked."""


class UnsafeStateError(StateError):
    """The state directory, or a file in it, is one that someone else could change (owner,
    mode, a link): nftnet, running as root, would be steered by them. The caller's directory
    is wrong, so exit 2; the message names the path and the fix."""

    exit_code = EXIT_INVALID


class LockTimeout(StateError):
    """Another nftnet command held the state lock longer than the bounded wait: nothing was
    changed, and trying again later may succeed (CNI's "try again later")."""


class DaemonRunning(StateError):
    """Another ``nftnet daemon`` runs on the state directory: one per directory."""
