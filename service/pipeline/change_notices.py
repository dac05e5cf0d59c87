"""What a change notice (storage/change_feed.py, a payload of migrations/0010) invalidates in
this process: the same as the writing process drops itself (service/http/middlewares.
invalidate_on_write and the handlers' forget_* calls), so a write through any process is seen
by every process on its next read.

  c:<ids>  those conversations' renders             q:<ids>  those posts' quote lists
  a:<ids>  those accounts (viewer, tokens) + every render (an account shows everywhere)
  v:<ids>  those viewers + every render (relations also feed other viewers' sections)
  t:<hex>  those tokens + every render              r        the rate-limit rows (reload)
  u:<ids>  those viewers' own renders (their likes and reposts; sent with the writer's
           fence, not by a trigger: migrations/0011)
  *        everything

Pure: given the versions of the render cache and the viewer cache. Cost: O(ids in the payload)
(at most 100), except forget_account, which walks the token cache once per account.
"""
from __future__ import annotations

from typing import Callable

from service.resilience.render_cache import Versions

from .viewer_cache import ViewerCache


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.isdigit()]


def apply(payload: str, versions: Versions, viewers: ViewerCache | None,
          reload_rate_limits: Callable[[], None] | None = None) -> None:
    kind, _, rest = payload.partition(":")
    if kind == "c":
        versions.bump(*_ints(rest))
    elif kind == "q":
        versions.bump(*(("quotes", i) for i in _ints(rest)))
    elif kind == "a":
        if viewers is not None:
            for account_id in _ints(rest):
                viewers.forget_account(account_id)
        versions.bump_all()
    elif kind == "v":
        if viewers is not None:
            viewers.forget_viewers(*_ints(rest))
        versions.bump_all()
    elif kind == "u":
        versions.bump(*(("viewer", i) for i in _ints(rest)))
    elif kind == "t":
        if viewers is not None:
            for token_hex in rest.split(","):
                try:
                    viewers.forget_token(bytes.fromhex(token_hex))
                except ValueError:
                    continue
        versions.bump_all()  # as the revoking process does (a write without CHANGED)
    elif kind == "r":
        if reload_rate_limits is not None:
            reload_rate_limits()
    else:  # "*" or anything this version does not know: the safe answer
        reset(versions, viewers)


def reset(versions: Versions, viewers: ViewerCache | None) -> None:
    """Notices may have been missed: nothing cached can be trusted as fresh."""
    versions.bump_all()
    if viewers is not None:
        viewers.tokens.clear()
        viewers.viewers.clear()
