"""The CNI specification's plumbing that needs no host (SPEC.md of containernetworking/cni,
versions 0.4.0, 1.0.0 and 1.1.0): commands and the environment each requires, version
negotiation, error codes and the error JSON, and the result that ADD prints.

Pure: main.py reads the environment and stdin and hands them here as plain values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import ip_interface
from typing import Any, Final

from nftnet.errors import EXIT_BUG, EXIT_INVALID, EXIT_RUNTIME

SUPPORTED_VERSIONS: Final = ("0.4.0", "1.0.0", "1.1.0")
COMMANDS: Final = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
# What each command requires (SPEC.md "Parameters", as the reference plugins' pkg/skel checks).
REQUIRED_ENV: Final[Mapping[str, tuple[str, ...]]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": ("CNI_PATH",),
    "STATUS": (),
    "VERSION": (),
}
# The first spec version that has the command: an older config cannot ask for it (code 1).
SINCE: Final = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}

# Well-known error codes (SPEC.md "Error codes"); 100 and above are nftnet-cni's own.
INCOMPATIBLE_VERSION: Final = 1
UNSUPPORTED_FIELD: Final = 2
UNKNOWN_CONTAINER: Final = 3
INVALID_ENVIRONMENT: Final = 4
IO_FAILURE: Final = 5
DECODING_FAILURE: Final = 6
INVALID_CONFIG: Final = 7
TRY_AGAIN_LATER: Final = 11
NOT_AVAILABLE: Final = 50  # STATUS: the plugin cannot serve ADD now
LIMITED_CONNECTIVITY: Final = 51  # STATUS: ... and existing containers may be cut off
NFTNET_FAILED: Final = 100  # nftnet or the kernel refused the change; nothing was applied
NOT_AS_ADDED: Final = 101  # CHECK: the kernel no longer holds what ADD made
INTERNAL: Final = 999  # a bug (libcni's ErrInternal); the traceback is in the error log
# Codes that mean the caller's input is wrong: exit status 2, as nftnet's own commands.
INPUT_CODES: Final = frozenset({INCOMPATIBLE_VERSION, UNSUPPORTED_FIELD, INVALID_ENVIRONMENT,
                                DECODING_FAILURE, INVALID_CONFIG})

# Container ids and network names (SPEC.md "Parameters"; libcni's utils.cniReg).
ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
IFNAME_MAX: Final = 15
_VERSION: Final = re.compile(r"^[0-9]+(\.[0-9]+){0,2}$")


class CniError(Exception):
    """An error that the plugin prints as the spec's error JSON on stdout, exiting non-zero."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def output(self, version: str) -> dict[str, Any]:
        """The error JSON: ``cniVersion``, ``code``, ``msg`` and ``details`` when there are any."""
        out: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    @property
    def exit_status(self) -> int:
        """2 for the caller's mistakes, 3 for a bug, 1 otherwise (nftnet's exit codes)."""
        if self.code in INPUT_CODES:
            return EXIT_INVALID
        return EXIT_BUG if self.code == INTERNAL else EXIT_RUNTIME


@dataclass(frozen=True)
class Env:
    """The ``CNI_*`` environment of one invocation, validated for its command."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: tuple[tuple[str, str], ...] = ()  # CNI_ARGS, in their order
    path: tuple[str, ...] = ()


def parse_env(environ: Mapping[str, str]) -> Env:
    """The invocation's parameters; CniError 4 names every missing or invalid variable."""
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        what = f"unknown CNI_COMMAND {command!r}" if command else "CNI_COMMAND is missing"
        raise CniError(INVALID_ENVIRONMENT, what, f"one of {', '.join(COMMANDS)}")
    required = REQUIRED_ENV[command]
    missing = [name for name in required if not environ.get(name)]
    if missing:
        raise CniError(INVALID_ENVIRONMENT,
                       f"required environment variables missing: {', '.join(missing)}")
    container_id = environ.get("CNI_CONTAINERID", "")
    ifname = environ.get("CNI_IFNAME", "")
    problems = []
    if "CNI_CONTAINERID" in required and not ID.match(container_id):
        problems.append(f"CNI_CONTAINERID {container_id!r}: must start with a letter or digit "
                        "and hold only letters, digits, '_', '.' and '-'")
    if "CNI_IFNAME" in required and (problem := ifname_problem(ifname)):
        problems.append(f"CNI_IFNAME {ifname!r}: {problem}")
    args = environ.get("CNI_ARGS", "")
    pairs = [part.partition("=") for part in args.split(";") if part]
    if any(not key or not eq for key, eq, _ in pairs):
        problems.append(f"CNI_ARGS {args!r}: must be KEY=VALUE pairs separated by ';'")
    if problems:
        raise CniError(INVALID_ENVIRONMENT, problems[0], "; ".join(problems[1:]))
    return Env(command=command, container_id=container_id,
               netns=environ.get("CNI_NETNS", ""), ifname=ifname,
               args=tuple((key, value) for key, _, value in pairs),
               path=tuple(p for p in environ.get("CNI_PATH", "").split(":") if p))


def ifname_problem(name: str) -> str | None:
    """Why ``name`` cannot be a Linux interface name (SPEC.md's rule), or None."""
    if not name or len(name) > IFNAME_MAX:
        return f"must be 1-{IFNAME_MAX} characters"
    if name in (".", "..") or any(c in "/:" or c.isspace() for c in name):
        return "must not be '.' or '..' nor hold '/', ':' or whitespace"
    return None


# -- versions ------------------------------------------------------------------------------

def version_key(text: object) -> tuple[int, int, int]:
    """A spec version as numbers (1 to 3 of them, as libcni reads "1.0"); CniError 6 if none."""
    if not isinstance(text, str) or not _VERSION.match(text):
        raise CniError(DECODING_FAILURE, f"cannot decode cniVersion {text!r}",
                       "a version is 1-3 numbers separated by dots, e.g. 1.0.0")
    parts = [int(p) for p in text.split(".")] + [0, 0]
    return parts[0], parts[1], parts[2]


def negotiate(conf: Mapping[str, Any], command: str) -> str:
    """The config's ``cniVersion`` when nftnet-cni speaks it and it has ``command``: the version
    of every output; CniError 1 otherwise."""
    version = conf.get("cniVersion")
    supported = ", ".join(SUPPORTED_VERSIONS)
    if version is None or version == "":
        raise CniError(INCOMPATIBLE_VERSION, "the network config gives no cniVersion",
                       f"nftnet-cni supports {supported}")
    key = version_key(version)
    if key not in {version_key(v) for v in SUPPORTED_VERSIONS}:
        raise CniError(INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f"config is {version}, nftnet-cni supports {supported}")
    since = SINCE.get(command)
    if since and key < version_key(since):
        raise CniError(INCOMPATIBLE_VERSION, f"{command} needs cniVersion {since} or later",
                       f"config is {version}")
    return str(version)


def version_output(data: bytes) -> dict[str, Any]:
    """VERSION's output: the version asked for on stdin (SPEC.md 1.0), or the newest one when
    it asks for none or one nftnet-cni lacks; VERSION takes no other parameter and never fails."""
    try:
        asked = json.loads(data).get("cniVersion") if data.strip() else None
        version = asked if version_key(asked) in {version_key(v) for v in SUPPORTED_VERSIONS} \
            else SUPPORTED_VERSIONS[-1]
    except (ValueError, AttributeError, CniError):
        version = SUPPORTED_VERSIONS[-1]
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


# -- the result ----------------------------------------------------------------------------

def result(prev: Mapping[str, Any], version: str) -> dict[str, Any]:
    """``prevResult`` as ADD's result, in the config's version: every key kept, ``cniVersion``
    set to the config's, and before 1.0.0 every IP naming its ``version`` (required there,
    dropped in 1.0.0; a 1.0.0 result that keeps it loses nothing)."""
    out = {"cniVersion": version, **{k: v for k, v in prev.items() if k != "cniVersion"}}
    ips = out.get("ips")
    if version_key(version) < (1, 0, 0) and isinstance(ips, list):
        out["ips"] = [_with_ip_version(ip) for ip in ips]
    return out


def _with_ip_version(ip: Any) -> Any:
    if not isinstance(ip, dict) or "version" in ip:
        return ip
    try:
        return {**ip, "version": str(ip_interface(ip["address"]).version)}
    except (KeyError, TypeError, ValueError):
        return ip
