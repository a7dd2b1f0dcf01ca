"""Running the real nftnet CLI inside a test namespace, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import yaml


def nftnet(lab_or_ns: object, *args: str, state_dir: Path, check: bool = True,
           stdin: IO[Any] | None = None, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    """``nftnet --state-dir … ARGS`` in a namespace (a Lab means its host namespace), with
    ``env`` added to the environment."""
    ns = getattr(lab_or_ns, "host", lab_or_ns)
    argv = ["ip", "netns", "exec", str(ns), sys.executable, "-m", "nftnet",
            "--state-dir", str(state_dir), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                          stdin=stdin, env={**os.environ, **env} if env else None)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}"
                             f"{proc.stderr}")
    return proc


def write_config(tmp: Path, config: dict, name: str = "config.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def published_ports(listing_json: str) -> set[tuple[int, int]]:
    """(family, host port) of every port nftnet's maps publish, in `nft -j list table inet
    nftnet` output."""
    import re

    out = set()
    for obj in json.loads(listing_json)["nftables"]:
        m = obj.get("map")
        family = m and re.fullmatch(r"pub(?:any)?([46])-port", m["name"])
        if family:
            out |= {(int(family[1]), elem[0]["concat"][-1]) for elem in m.get("elem", [])}
    return out
