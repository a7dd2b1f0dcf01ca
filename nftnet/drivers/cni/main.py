"""The ``nftnet-cni`` executable: the ``CNI_*`` environment and the config on stdin in, the
result or the spec's error JSON on stdout, exit status 0 or not; never a traceback (an
unexpected error is code 999, its traceback appended to STATE_DIR/error.log, one line on
stderr). Everything else is pure and lives in spec.py, request.py and plugin.py.

The state directory is the config's ``stateDir``, else ``NFTNET_STATE_DIR``, else nftnet's
default; ``NFTNET_LOCK_TIMEOUT`` bounds the wait for nftnet's lock (seconds, default 30:
adapter.py). VERSION starts no engine: a runtime probes it often.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import IO, Any, Final

from nftnet import api
from nftnet.drivers.cni.engine import Engine
from nftnet.drivers.cni.plugin import run
from nftnet.drivers.cni.request import decode, parse_request
from nftnet.drivers.cni.spec import (
    INTERNAL,
    IO_FAILURE,
    NOT_AVAILABLE,
    SUPPORTED_VERSIONS,
    TRY_AGAIN_LATER,
    CniError,
    negotiate,
    parse_env,
    version_output,
)
from nftnet.errors import EXIT_INTERRUPTED, EXIT_OK

# nftnet's engine for the plugin (adapter.py, on nftnet.api), loaded only by commands that use it.
ENGINE: Final = "nftnet.drivers.cni.adapter:CniEngine"
EngineFactory = Callable[[str], Engine]


def real_engine(state_dir: str) -> Engine:
    """nftnet's engine on ``state_dir``; CniError 50 when this nftnet has none."""
    module, _, name = ENGINE.partition(":")
    try:
        factory: EngineFactory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise CniError(NOT_AVAILABLE, "nftnet's engine is not available", str(e)) from None
    return factory(state_dir)


def main(engine_factory: EngineFactory = real_engine, environ: Mapping[str, str] | None = None,
         stdin: IO[bytes] | None = None, stdout: IO[str] | None = None,
         stderr: IO[str] | None = None) -> int:
    """One invocation of the plugin; the exit status (0, or nftnet's 1, 2, 3, 130)."""
    environ = os.environ if environ is None else environ
    stdin = sys.stdin.buffer if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    version = SUPPORTED_VERSIONS[-1]  # of an error before the config's is known
    state_dir = environ.get("NFTNET_STATE_DIR") or api.DEFAULT_DIR
    try:
        env = parse_env(environ)
        data = _read(stdin, skip=env.command == "VERSION")
        if env.command == "VERSION":
            return _write(stdout, version_output(data))
        conf = decode(data)
        version = negotiate(conf, env.command)
        request = parse_request(env, conf, version)
        state_dir = request.state_dir or state_dir
        output = run(request, engine_factory(state_dir))
        return EXIT_OK if output is None else _write(stdout, output)
    except CniError as e:
        return _fail(e, version, stdout, stderr)
    except KeyboardInterrupt:
        _fail(CniError(TRY_AGAIN_LATER, "interrupted"), version, stdout, stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        where = _log_traceback(state_dir)
        return _fail(CniError(INTERNAL, f"unexpected error: {e!r}",
                              f"traceback in {where}" if where else
                              f"no traceback: {state_dir}/error.log cannot be written"),
                     version, stdout, stderr)


def _read(stdin: IO[bytes], skip: bool) -> bytes:
    """The config on stdin; VERSION reads it only from a pipe or file, never a terminal."""
    try:
        return b"" if skip and stdin.isatty() else stdin.read()
    except OSError as e:
        raise CniError(IO_FAILURE, "cannot read the network config from stdin",
                       str(e)) from None


def _write(stdout: IO[str], output: dict[str, Any]) -> int:
    try:
        stdout.write(json.dumps(output) + "\n")
        stdout.flush()
    except OSError as e:
        raise CniError(IO_FAILURE, "cannot write to stdout", str(e)) from None
    return EXIT_OK


def _fail(error: CniError, version: str, stdout: IO[str], stderr: IO[str]) -> int:
    """The error JSON on stdout and one line on stderr (runtimes log it); the exit status."""
    try:
        stderr.write(f"nftnet-cni: error {error.code}: {error.msg}"
                     + (f" ({error.details})" if error.details else "") + "\n")
        _write(stdout, error.output(version))
    except (OSError, CniError):
        pass  # the runtime went away: the exit status is all it could still see
    return error.exit_status


def _log_traceback(state_dir: str) -> str | None:
    """Append the current traceback to STATE_DIR/error.log; its path, or None."""
    import traceback  # only on this path: it costs every ADD 2 ms

    where = api.Engine(state_dir).state_dir.log_error(traceback.format_exc())
    return str(where) if where else None


def entry() -> None:
    sys.exit(main())
