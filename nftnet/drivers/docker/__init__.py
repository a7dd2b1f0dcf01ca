"""The Docker Engine driver of ``nftnet daemon --docker``.

- ``translate``: network and container inspect objects -> networks and endpoints (pure);
- ``events``: which Engine API event means what for nftnet (pure);
- ``engine``: the Engine API client (the official Docker SDK, extra ``nftnet[docker]``);
- ``preflight``: dockerd must not write its own rules nor run the userland proxy.

dockerd runs with ``--iptables=false --ip6tables=false --userland-proxy=false``; nftnet then
enforces Docker's semantics on the bridges, veths and addresses dockerd made.
"""
