"""Who is asking: the viewer and the relations the visibility rules need. Plain data."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Viewer:
    """An authenticated account with its relations, or the anonymous viewer (id None).

    blocks: accounts this viewer blocks; blocked_by: accounts that block this viewer;
    mutes: accounts this viewer mutes; muted_words: lower-cased words and phrases.
    """
    id: int | None
    follows: frozenset[int] = frozenset()
    blocks: frozenset[int] = frozenset()
    blocked_by: frozenset[int] = frozenset()
    mutes: frozenset[int] = frozenset()
    muted_words: tuple[str, ...] = ()

    @property
    def anonymous(self) -> bool:
        return self.id is None


ANONYMOUS = Viewer(None)
