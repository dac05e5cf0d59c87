-- A like or a repost no longer notifies from its own transaction (0010's trigger on
-- `reactions`): PostgreSQL serializes the commits of transactions that notify (a lock held
-- at commit), and a notice per like cost the database about two thirds of its like rate
-- (bench/likes.py: 2,500 likes/s against 7,200 without it). What the notice said, `u:<id>`
-- (that viewer's own renders show `liked`), now goes out with the writing process's fence
-- (storage/change_feed.py: one notice for all the writes waiting on one fence, in the same
-- transaction as the fence's notice, so before it). The counts were never the trigger's:
-- they change when the background fold moves the deltas into post_counts, whose trigger
-- still notifies. What is lost: a reaction written behind the service's back (SQL by hand)
-- reaches other processes' cached renders of that viewer within render_cache_ttl_s, not at
-- once; so does one made, during an upgrade, through a process still running the version
-- before this migration (it neither has the trigger any more nor sends the notice itself).
DROP TRIGGER IF EXISTS reactions_notify_insert ON reactions;
DROP TRIGGER IF EXISTS reactions_notify_update ON reactions;
DROP TRIGGER IF EXISTS reactions_notify_delete ON reactions;
DROP FUNCTION IF EXISTS arbor_notify_reactors();
