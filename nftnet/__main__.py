"""``python -m nftnet``."""

from nftnet.cli.main import entry

entry()
