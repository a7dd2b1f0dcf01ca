"""Docker's iptables-save layout and nftnet configs: parse it, import it, export to it."""
