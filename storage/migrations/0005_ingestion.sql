-- Out-of-order ingestion: a reply whose parent has not arrived waits here, whole, and is
-- moved into posts (with its conversation, depth, section and counters) when the parent
-- arrives. Keyed by its own id so a re-sent post is recognised as a duplicate.
CREATE TABLE pending_posts (
    id              bigint      PRIMARY KEY,
    author_id       bigint      NOT NULL REFERENCES accounts (id),
    in_reply_to_id  bigint      NOT NULL,
    quote_of_id     bigint,
    text            text        NOT NULL,
    created_at      timestamptz NOT NULL,
    deleted_at      timestamptz,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pending_posts_parent ON pending_posts (in_reply_to_id, id);
