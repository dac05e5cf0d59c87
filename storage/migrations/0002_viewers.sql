-- Viewers: bearer tokens for accounts (DESIGN §4), and the index the relation rules read.

-- Only the SHA-256 of a token is stored; the token itself is shown once, when it is created.
-- A revoked token stays (revoked_at set) so that its id keeps meaning "that revoked token".
CREATE TABLE account_tokens (
    token_hash  bytea       PRIMARY KEY CHECK (length(token_hash) = 32),
    account_id  bigint      NOT NULL REFERENCES accounts (id),
    label       text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX account_tokens_account ON account_tokens (account_id);

-- "Who mutes this account", as blocks_blocked answers "who blocks this account".
-- The /v1/me lists page by the primary keys: (follower_id, followee_id), (blocker_id,
-- blocked_id), (muter_id, muted_id) and (account_id, word) are already keyset orders.
CREATE INDEX mutes_muted ON mutes (muted_id, muter_id);
