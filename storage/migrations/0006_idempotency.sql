-- Idempotency-Key records of POST /v1/posts and DELETE /v1/posts/{id}: one row per account and
-- key, written in the same transaction as the write it acknowledges, so a retried request
-- replays the stored response instead of writing twice, and a failed write stores nothing.
-- request_hash: SHA-256 of method, path and canonical body; status/response: what was answered.
CREATE TABLE idempotency_keys (
    account_id    bigint      NOT NULL,
    key           text        NOT NULL,
    method        text        NOT NULL,
    path          text        NOT NULL,
    request_hash  bytea       NOT NULL,
    status        int,
    response      bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, key)
);
-- Expired keys are swept a few at a time by the writes themselves (oldest first).
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
