"""The commands' bodies: each turns a parsed Request into one call of the engine (pure: the
engine is passed in, the real one by main.py, a fake one by the tests).

nftnet's errors become the spec's: what the caller asked wrongly (a host port another
container holds, a subnet another network has) is an invalid config (7), a lock held too long
is "try again later" (11), any other refusal of nftnet or the kernel is nftnet-cni's code 100;
nothing was applied in each case.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from nftnet.drivers.cni.engine import Engine
from nftnet.drivers.cni.request import Request
from nftnet.drivers.cni.spec import (
    INVALID_CONFIG,
    LIMITED_CONNECTIVITY,
    NFTNET_FAILED,
    NOT_AS_ADDED,
    NOT_AVAILABLE,
    TRY_AGAIN_LATER,
    CniError,
    result,
)
from nftnet.errors import ConfigError, LockTimeout, NftnetError

OWNER: Final = "cni"  # nftnet's state marks these entries as the CNI runtime's


def run(request: Request, engine: Engine) -> dict[str, Any] | None:
    """Run the request's command: the result to print (ADD's), or None; CniError on failure."""
    try:
        return BODIES[request.command](request, engine)
    except NftnetError as e:
        raise cni_error(e) from e


def add(request: Request, engine: Engine) -> dict[str, Any]:
    """Register the endpoint and publish its ports; the previous result, passed on."""
    assert request.network and request.endpoint and request.prev_result is not None
    engine.add(OWNER, request.network, request.endpoint, request.ports)
    return result(request.prev_result, request.version)


def delete(request: Request, engine: Engine) -> None:
    """Remove what ADD made; the engine makes it idempotent (nothing held is success)."""
    assert request.attachment
    engine.delete(OWNER, request.network_name, request.attachment)


def check(request: Request, engine: Engine) -> None:
    """CniError 101 naming what the kernel or the state no longer hold of what ADD made."""
    assert request.network and request.endpoint
    missing = engine.check(OWNER, request.network, request.endpoint, request.ports)
    if missing:
        raise CniError(NOT_AS_ADDED, f"nftnet does not hold what ADD made for "
                       f"{request.endpoint.attachment.container_id} on {request.network_name}",
                       "; ".join(missing))


def gc(request: Request, engine: Engine) -> None:
    """Remove this network's attachments that the runtime no longer knows."""
    engine.gc(OWNER, request.network_name, request.valid)


def status(request: Request, engine: Engine) -> None:
    """CniError 50 (or 51) when nftnet cannot serve ADD on the network now."""
    readiness = engine.status(OWNER, request.network_name)
    if readiness.problem:
        raise CniError(LIMITED_CONNECTIVITY if readiness.limited else NOT_AVAILABLE,
                       readiness.problem)


BODIES: Final[dict[str, Callable[[Request, Engine], dict[str, Any] | None]]] = {
    "ADD": add, "DEL": delete, "CHECK": check, "GC": gc, "STATUS": status}


def cni_error(error: NftnetError) -> CniError:
    """nftnet's error as the spec's, its message and problems kept."""
    if isinstance(error, LockTimeout):
        return CniError(TRY_AGAIN_LATER, str(error))
    if isinstance(error, ConfigError):
        return CniError(INVALID_CONFIG, error.problems[0] if error.problems else str(error),
                        "; ".join(error.problems))
    return CniError(NFTNET_FAILED, str(error))
