"""The kernel boundary one engine works through: nftables, links and sysctls, and the scratch
kernel (nft's own parser in a throwaway namespace). ``Kernel.real()`` is this host's, loaded
on first use; tests hand the engine ``Kernel.fake()`` (nft/fake.py, link/fake.py), which the
kernel tests prove against the real one."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nftnet.link.backend import LinkBackend
    from nftnet.nft.backend import NftBackend, Scratch


class Kernel:
    """Where the engine's changes go. Any part left None is this host's, made on first use
    (libnftables costs a ``port publish`` nothing until it is used). A plain class: a
    dataclass costs every command's start-up a millisecond."""

    def __init__(self, nft: NftBackend | None = None, links: LinkBackend | None = None,
                 scratch: Scratch | None = None) -> None:
        self.given_nft, self.given_links, self.given_scratch = nft, links, scratch

    @cached_property
    def nft(self) -> NftBackend:
        if self.given_nft is not None:
            return self.given_nft
        from nftnet.nft.libnft import LibNft

        return LibNft()

    def generation(self) -> str | None:
        """``nft.generation()``, without loading libnftables for it on this host."""
        if self.given_nft is not None or "nft" in self.__dict__:
            return self.nft.generation()
        from nftnet.nft import generation

        return generation.generation()

    @cached_property
    def links(self) -> LinkBackend:
        if self.given_links is not None:
            return self.given_links
        from nftnet.link.backend import KernelLinks

        return KernelLinks()

    @cached_property
    def scratch(self) -> Scratch:
        if self.given_scratch is not None:
            return self.given_scratch
        from nftnet.nft import scratch

        return scratch

    @classmethod
    def fake(cls) -> Kernel:
        """Everything in memory: for the engine's unit tests."""
        from nftnet.link.fake import FakeLinks
        from nftnet.nft.fake import FakeNft, FakeScratch

        return cls(FakeNft(), FakeLinks(), FakeScratch())
