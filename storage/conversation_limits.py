"""Per-conversation caps on the view limits (migration 0007), for the admin API."""
from __future__ import annotations

from .db import Database
from .rows import Caps

FIELDS = ("depth", "branching", "max_nodes", "ancestors")


async def conversation_of(db: Database, post_id: int) -> int | None:
    return await db.fetchval("SELECT conversation_id FROM posts WHERE id = $1", post_id)


async def get_caps(db: Database, conversation_id: int) -> Caps:
    row = await db.fetchrow("SELECT depth, branching, max_nodes, ancestors FROM "
                            "conversation_limits WHERE conversation_id = $1", conversation_id)
    return Caps(**row) if row else Caps()


async def set_caps(db: Database, conversation_id: int, caps: Caps) -> None:
    await db.execute(
        """INSERT INTO conversation_limits (conversation_id, depth, branching, max_nodes, ancestors)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (conversation_id) DO UPDATE SET depth = $2, branching = $3,
               max_nodes = $4, ancestors = $5, updated_at = now()""",
        conversation_id, caps.depth, caps.branching, caps.max_nodes, caps.ancestors)


async def clear_caps(db: Database, conversation_id: int) -> bool:
    return await db.execute("DELETE FROM conversation_limits WHERE conversation_id = $1",
                            conversation_id) != "DELETE 0"
