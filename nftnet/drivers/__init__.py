"""Drivers: nftnet's firewall for container runtimes that make their own links."""
