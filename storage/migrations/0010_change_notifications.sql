-- Cache coherence across processes and hosts (storage/change_feed.py): every write that can
-- change a cached render or a cached viewer sends a NOTIFY on channel arbor.changes from the
-- write's own transaction (delivered at commit, never for a rolled-back write), whatever wrote
-- it: the API, an import, a repair, SQL by hand.
--
-- Statement-level triggers over transition tables: one notification per statement, not per
-- row, so a bulk load of a million replies to one conversation sends one. Payloads:
--   c:<id>[,<id>...]   conversations whose posts, counters, labels or limits changed
--   q:<id>[,<id>...]   posts whose quote lists changed
--   a:<id>[,...]       accounts whose state or profile changed (every viewer and render)
--   v:<id>[,...]       accounts whose relations (as viewers) changed
--   u:<id>[,...]       accounts whose own reactions changed (their renders show `liked`)
--   t:<hex>[,...]      tokens revoked or deleted
--   r                  rate-limit overrides or the deny list changed
--   *                  more than 100 ids in one statement: everything
-- A payload stays far below NOTIFY's 8000-byte limit (100 ids of at most 20 digits).

CREATE FUNCTION arbor_notify_ids(kind text, ids text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(ids) > 100 THEN
        PERFORM pg_notify('arbor.changes', '*');
    ELSIF cardinality(ids) > 0 THEN
        PERFORM pg_notify('arbor.changes', kind || ':' || array_to_string(ids, ','));
    END IF;
END $$;

CREATE FUNCTION arbor_notify_posts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM arbor_notify_ids('c', ARRAY(SELECT DISTINCT conversation_id::text FROM changed
                                        LIMIT 101));
    PERFORM arbor_notify_ids('q', ARRAY(SELECT DISTINCT quote_of_id::text FROM changed
                                        WHERE quote_of_id IS NOT NULL LIMIT 101));
    RETURN NULL;
END $$;

CREATE FUNCTION arbor_notify_conversations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM arbor_notify_ids('c', ARRAY(SELECT DISTINCT conversation_id::text FROM changed
                                        LIMIT 101));
    RETURN NULL;
END $$;

CREATE FUNCTION arbor_notify_labels() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM arbor_notify_ids('c', ARRAY(SELECT DISTINCT p.conversation_id::text
                                        FROM changed JOIN posts p ON p.id = changed.post_id
                                        LIMIT 101));
    RETURN NULL;
END $$;

CREATE FUNCTION arbor_notify_accounts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM arbor_notify_ids('a', ARRAY(SELECT DISTINCT id::text FROM changed LIMIT 101));
    RETURN NULL;
END $$;

-- TG_ARGV[0], TG_ARGV[1]: the relation's columns naming whose viewer changed.
CREATE FUNCTION arbor_notify_viewers() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids text[];
BEGIN
    IF TG_ARGV[0] = 'blocks' THEN  -- a block hides both ways: both viewers change
        ids := ARRAY(SELECT DISTINCT x::text FROM changed,
                     LATERAL (VALUES (blocker_id), (blocked_id)) v(x) LIMIT 101);
    ELSIF TG_ARGV[0] = 'follows' THEN
        ids := ARRAY(SELECT DISTINCT follower_id::text FROM changed LIMIT 101);
    ELSIF TG_ARGV[0] = 'mutes' THEN
        ids := ARRAY(SELECT DISTINCT muter_id::text FROM changed LIMIT 101);
    ELSE
        ids := ARRAY(SELECT DISTINCT account_id::text FROM changed LIMIT 101);
    END IF;
    PERFORM arbor_notify_ids('v', ids);
    RETURN NULL;
END $$;

CREATE FUNCTION arbor_notify_reactors() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN  -- the counts follow when the deltas are folded into post_counts (its own notice)
    PERFORM arbor_notify_ids('u', ARRAY(SELECT DISTINCT account_id::text FROM changed
                                        LIMIT 101));
    RETURN NULL;
END $$;

CREATE FUNCTION arbor_notify_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM arbor_notify_ids('t', ARRAY(SELECT DISTINCT encode(token_hash, 'hex') FROM changed
                                        WHERE TG_OP = 'DELETE' OR revoked_at IS NOT NULL
                                        LIMIT 101));
    RETURN NULL;
END $$;

CREATE FUNCTION arbor_notify_rate_limits() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('arbor.changes', 'r');
    RETURN NULL;
END $$;

-- Three triggers per table (a transition table belongs to one event), one function.
DO $$
DECLARE
    t record;
    ev text;
BEGIN
    FOR t IN SELECT * FROM (VALUES
            ('posts', 'arbor_notify_posts', ''),
            ('post_counts', 'arbor_notify_conversations', ''),
            ('conversation_limits', 'arbor_notify_conversations', ''),
            ('labels', 'arbor_notify_labels', ''),
            ('accounts', 'arbor_notify_accounts', ''),
            ('follows', 'arbor_notify_viewers', 'follows'),
            ('blocks', 'arbor_notify_viewers', 'blocks'),
            ('mutes', 'arbor_notify_viewers', 'mutes'),
            ('muted_words', 'arbor_notify_viewers', 'muted_words'),
            ('account_tokens', 'arbor_notify_tokens', ''),
            ('reactions', 'arbor_notify_reactors', ''),
            ('rate_limit_overrides', 'arbor_notify_rate_limits', ''),
            ('deny_list', 'arbor_notify_rate_limits', '')) AS v(tbl, fn, arg)
    LOOP
        FOREACH ev IN ARRAY ARRAY['INSERT', 'UPDATE', 'DELETE'] LOOP
            IF t.tbl = 'accounts' AND ev = 'INSERT' THEN
                CONTINUE;  -- a new account is in no cached render or viewer yet
            END IF;
            IF t.tbl = 'account_tokens' AND ev = 'INSERT' THEN
                CONTINUE;  -- a new token is in no cache yet
            END IF;
            EXECUTE format('CREATE TRIGGER %I AFTER %s ON %I REFERENCING %s TABLE AS changed '
                           'FOR EACH STATEMENT EXECUTE FUNCTION %I(%L)',
                           t.tbl || '_notify_' || lower(ev), ev, t.tbl,
                           CASE ev WHEN 'DELETE' THEN 'OLD' ELSE 'NEW' END, t.fn, t.arg);
        END LOOP;
    END LOOP;
END $$;
