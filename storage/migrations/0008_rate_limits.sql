-- Per-client rate limits (issue 11): per-account overrides of the budgets (a trusted
-- integration gets more) and the deny list, set by SREs through the admin API. Both are
-- small tables read whole at start-up and every `rate_limit_reload_s` by each process; they
-- survive restarts. A rate is limits' notation ('30000/5minutes'); NULL: the setting's.
CREATE TABLE rate_limit_overrides (
    account_id  bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    read        text,
    write       text,
    not_found   text,
    note        text        NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Exactly one of network (an address is a /32 or /128) or account_id per entry.
CREATE TABLE deny_list (
    id          bigserial   PRIMARY KEY,
    network     cidr UNIQUE,
    account_id  bigint UNIQUE,
    note        text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((network IS NULL) <> (account_id IS NULL))
);
