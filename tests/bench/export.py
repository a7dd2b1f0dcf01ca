"""`nftnet export --format iptables-save -f CONFIG`, for benchmark sizes.

compat's ``_network_of`` scans every endpoint for every port (quadratic: about 40 minutes at
50,000 ports); with an index the text is identical and takes seconds. Run in its own process
so the benchmark process stays small: ``python -m tests.bench.export CONFIG``.
"""

from __future__ import annotations

import sys
from unittest import mock

from compat.iptables_save import export
from nftnet.config.load import load_config
from nftnet.config.model import IPAddress, Network


def export_text(config_path: str) -> str:
    """The iptables-save text Docker 20.10 would have for the config (IPv4)."""
    config = load_config(config_path)
    index: dict[IPAddress, Network] = {}
    for ep in config.endpoints.values():
        for addr in (ep.ipv4, ep.ipv6):
            if addr is not None:
                index.setdefault(addr, config.networks[ep.network])
    with mock.patch.object(export, "_network_of", lambda _config, addr: index[addr]):
        return export.export_save(config, 4)[0]


if __name__ == "__main__":
    sys.stdout.write(export_text(sys.argv[1]))
