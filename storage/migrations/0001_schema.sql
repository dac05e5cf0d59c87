-- Accounts, posts, counters, relations and labels (DESIGN §3).
-- Every post row carries conversation_id (the root's id) and every thread query filters
-- on it, so the tables can later be distributed by conversation (Citus).

CREATE TABLE accounts (
    id            bigint PRIMARY KEY,
    handle        text        NOT NULL UNIQUE,
    display_name  text        NOT NULL DEFAULT '',
    state         text        NOT NULL DEFAULT 'active'
                  CHECK (state IN ('active', 'suspended', 'deactivated', 'locked')),
    protected     boolean     NOT NULL DEFAULT false,
    has_avatar    boolean     NOT NULL DEFAULT false,
    verified      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- section: 0 normal, 1 low_quality, 2 offensive (computed at write / label time).
-- rank_key: larger ranks higher in sort=ranked; computed at write / label time, never at
--   read time, so keyset cursors over (rank_key, id) stay stable.
-- depth: 0 for a root; lets the ancestors view count the gap it cuts without walking it.
-- listed: the post appears in its parent's reply list: it is not deleted, or it still has
--   listed replies (then it renders as a tombstone that keeps them attached).
CREATE TABLE posts (
    id               bigint      PRIMARY KEY,
    conversation_id  bigint      NOT NULL,
    author_id        bigint      NOT NULL REFERENCES accounts (id),
    in_reply_to_id   bigint,
    quote_of_id      bigint,
    text             text        NOT NULL,
    created_at       timestamptz NOT NULL,
    deleted_at       timestamptz,
    depth            integer     NOT NULL DEFAULT 0,
    section          smallint    NOT NULL DEFAULT 0 CHECK (section IN (0, 1, 2)),
    rank_key         bigint      NOT NULL DEFAULT 0,
    listed           boolean     NOT NULL DEFAULT true
);

-- Top-K children of one parent in one section: an index range scan for every sort.
-- ranked: ORDER BY rank_key DESC, id DESC (backward scan); newest/oldest: by id.
CREATE INDEX posts_children_ranked ON posts (conversation_id, in_reply_to_id, section, rank_key, id)
    WHERE listed AND in_reply_to_id IS NOT NULL;
CREATE INDEX posts_children_by_id ON posts (conversation_id, in_reply_to_id, section, id)
    WHERE listed AND in_reply_to_id IS NOT NULL;
CREATE INDEX posts_quotes ON posts (quote_of_id, id) WHERE quote_of_id IS NOT NULL;
CREATE INDEX posts_author ON posts (author_id, id);

-- Counters live apart from posts so that the hot row a viral post's replies update is
-- narrow and has no secondary index (HOT updates). Kept exact in the write transaction.
-- replies_*: listed direct replies per section.
CREATE TABLE post_counts (
    post_id              bigint  PRIMARY KEY,
    conversation_id      bigint  NOT NULL,
    replies_normal       integer NOT NULL DEFAULT 0,
    replies_low_quality  integer NOT NULL DEFAULT 0,
    replies_offensive    integer NOT NULL DEFAULT 0,
    likes                integer NOT NULL DEFAULT 0,
    reposts              integer NOT NULL DEFAULT 0,
    quotes               integer NOT NULL DEFAULT 0
);

CREATE TABLE follows (
    follower_id  bigint NOT NULL REFERENCES accounts (id),
    followee_id  bigint NOT NULL REFERENCES accounts (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, followee_id)
);

CREATE TABLE blocks (
    blocker_id  bigint NOT NULL REFERENCES accounts (id),
    blocked_id  bigint NOT NULL REFERENCES accounts (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX blocks_blocked ON blocks (blocked_id, blocker_id);

CREATE TABLE mutes (
    muter_id    bigint NOT NULL REFERENCES accounts (id),
    muted_id    bigint NOT NULL REFERENCES accounts (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (muter_id, muted_id)
);

CREATE TABLE muted_words (
    account_id  bigint NOT NULL REFERENCES accounts (id),
    word        text   NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, word)
);

CREATE TABLE labels (
    post_id     bigint NOT NULL,
    label       text   NOT NULL CHECK (label IN ('spam', 'abusive')),
    score       real   NOT NULL CHECK (score >= 0 AND score <= 1),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, label)
);

-- Which seed presets have been loaded, so `arbor seed` is idempotent.
CREATE TABLE seed_runs (
    preset      text PRIMARY KEY,
    posts       bigint NOT NULL,
    roots       jsonb  NOT NULL DEFAULT '{}',  -- named root post ids, e.g. {"replies_1m": 123}
    created_at  timestamptz NOT NULL DEFAULT now()
);
