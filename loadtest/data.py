"""The load test's data file (written by `arbor seed --preset bench --export PATH`; see
storage/loadtest_export.py): post ids per conversation, the huge conversation, accounts
with tokens. Loaded once per process; `DataError` says what is wrong and how to make one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

HOW = "make one with `arbor seed --preset bench --export loadtest/data.json`"


class DataError(RuntimeError):
    pass


@dataclass(frozen=True)
class Conversation:
    name: str
    root: str
    replies: int
    levels: tuple[tuple[str, ...], ...]   # levels[0]: direct replies, [1]: theirs, ...

    def posts(self, depth_from: int = 0) -> tuple[str, ...]:
        """Every sampled post at depth >= depth_from + 1 (0: the direct replies and below)."""
        return tuple(p for level in self.levels[depth_from:] for p in level)


@dataclass(frozen=True)
class Account:
    id: str
    handle: str
    token: str


@dataclass(frozen=True)
class Data:
    preset: str
    conversations: tuple[Conversation, ...]     # all but the huge one (unless it is alone)
    huge: Conversation
    accounts: tuple[Account, ...]


def parse(doc: dict) -> Data:
    try:
        conversations = [Conversation(c["name"], c["root"], int(c["replies"]),
                                      tuple(tuple(level) for level in c["levels"]))
                         for c in doc["conversations"]]
        accounts = tuple(Account(a["id"], a["handle"], a["token"]) for a in doc["accounts"])
        huge_root = doc["huge_conversation"]
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"the data file is not an export ({e!r}); {HOW}") from None
    if not conversations:
        raise DataError(f"the data file names no conversation; {HOW}")
    huge = next((c for c in conversations if c.root == huge_root), conversations[0])
    others = tuple(c for c in conversations if c is not huge) or (huge,)
    return Data(doc.get("preset", "?"), others, huge, accounts)


@lru_cache(maxsize=4)
def load(path: str) -> Data:
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise DataError(f"no data file {path}; {HOW}") from None
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}; {HOW}") from None
    return parse(doc)
