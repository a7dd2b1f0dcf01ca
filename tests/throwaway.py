"""The life cycle that every throwaway environment of the tests shares (a Lab, a dockerd, a
LAN namespace beside it, a Podman): ``_setup`` makes it on enter; ``close`` removes whatever
exists of it, after the block or after a setup that failed half-way (so it copes with any
part of a setup, and with being called twice)."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Throwaway:
    def __enter__(self) -> Self:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _setup(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
