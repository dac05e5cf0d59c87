-- Likes and reposts (issue 15). One row per (account, post, kind) says who reacted; the
-- primary key makes a second like a no-op and serves the viewer's own state for a page
-- (account_id = $1 AND post_id = ANY(...)) from one index range.
CREATE TABLE reactions (
    account_id       bigint      NOT NULL REFERENCES accounts (id),
    post_id          bigint      NOT NULL,
    kind             smallint    NOT NULL CHECK (kind IN (1, 2)),  -- 1 like, 2 repost
    conversation_id  bigint      NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, post_id, kind)
);
-- A post's likers / reposters (recounts, repair, "favourited by" lists).
CREATE INDEX reactions_post ON reactions (post_id, kind, account_id);

-- The counters' changes not yet folded into post_counts: a like adds +1 to one of a few
-- shard rows of its post, chosen at random, so concurrent likers of one viral post do not
-- queue on a single row lock (post_counts' row). A post's exact count is
-- post_counts.likes + sum(reaction_deltas.likes); storage/reactions.fold moves the sums into
-- post_counts (and the engagement score into posts.rank_key) every few hundred ms.
CREATE TABLE reaction_deltas (
    post_id          bigint   NOT NULL,
    shard            smallint NOT NULL,
    conversation_id  bigint   NOT NULL,
    likes            integer  NOT NULL DEFAULT 0,
    reposts          integer  NOT NULL DEFAULT 0,
    PRIMARY KEY (post_id, shard)
);
