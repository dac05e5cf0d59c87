-- Per-conversation caps on the view limits (DESIGN §6: a viral post can get smaller limits),
-- set by SREs through the admin API. NULL: no cap on that limit. Read with the ancestor chain
-- (the first query of every render), so they cost no extra round trip.
CREATE TABLE conversation_limits (
    conversation_id  bigint PRIMARY KEY,
    depth            integer CHECK (depth >= 0),
    branching        integer CHECK (branching >= 1),
    max_nodes        integer CHECK (max_nodes >= 1),
    ancestors        integer CHECK (ancestors >= 1),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
