"""Build accounts and reply trees through the real write path (counters and all)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from storage import account_tokens, post_writes, relation_writes
from storage.db import Database

_account_ids = itertools.count(10_000_000)


@dataclass
class World:
    db: Database

    async def account(self, handle: str | None = None, **flags) -> int:
        """An established account by default (with an avatar), so that its replies are not
        demoted by the new-account rule; pass has_avatar=False for a thin new one."""
        flags.setdefault("has_avatar", True)
        account_id = next(_account_ids)
        await post_writes.insert_account(self.db, account_id, handle or f"user{account_id}",
                                         f"User {account_id}", **flags)
        return account_id

    async def accounts(self, n: int, **flags) -> list[int]:
        return [await self.account(**flags) for _ in range(n)]

    async def post(self, author: int, text: str = "hello", *, reply_to: int | None = None,
                   quote: int | None = None, rank_key: int = 0) -> int:
        new = await post_writes.insert_post(self.db, author, text, in_reply_to_id=reply_to,
                                            quote_of_id=quote, rank_key=rank_key)
        return new.id

    async def delete(self, post_id: int) -> bool:
        return await post_writes.delete_post(self.db, post_id)

    async def chain(self, author: int, length: int) -> list[int]:
        """A root and `length - 1` replies, each answering the previous one."""
        ids = [await self.post(author, "root")]
        for i in range(1, length):
            ids.append(await self.post(author, f"level {i}", reply_to=ids[-1]))
        return ids

    async def fan(self, author: int, parent: int, n: int, *, rank=lambda i: 0) -> list[int]:
        return [await self.post(author, f"reply {i}", reply_to=parent, rank_key=rank(i))
                for i in range(n)]

    async def token(self, account_id: int) -> str:
        """A new bearer token for the account (send it as `Authorization: Bearer <token>`)."""
        return (await account_tokens.create_token(self.db, account_id, "test")).token

    async def relate(self, kind: str, actor: int, target: int) -> None:
        """actor follows / blocks / mutes target (kind: "follows", "blocks", "mutes")."""
        await relation_writes.add_relation(self.db, kind, actor, target)

    async def mute_word(self, account_id: int, word: str) -> None:
        await relation_writes.add_muted_word(self.db, account_id, word, max_words=1_000_000)
