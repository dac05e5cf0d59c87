-- Quality sections and viewer-first ranking (DESIGN §5).

-- Duplicate detection: a reply whose normalized text equals an earlier reply's in the same
-- conversation is low quality. Normalization: lower case, every run of non-alphanumerics
-- becomes one space, trimmed. A stored generated column, so COPY-loaded rows get it too.
ALTER TABLE posts ADD COLUMN text_hash bytea GENERATED ALWAYS AS (
    decode(md5(btrim(regexp_replace(lower(text), '[^[:alnum:]]+', ' ', 'g'))), 'hex')) STORED;
CREATE INDEX posts_conversation_text ON posts (conversation_id, text_hash, id)
    WHERE in_reply_to_id IS NOT NULL;

-- Replies by given authors under given parents (the viewer's own, the focal author's, the
-- accounts the viewer follows): ranked first and never demoted. A probe per author, whatever
-- the number of replies to the parent.
CREATE INDEX posts_children_by_author ON posts (conversation_id, in_reply_to_id, author_id)
    WHERE listed AND in_reply_to_id IS NOT NULL;

-- Who took part in a conversation (the "blocked or muted by N participants" rule).
CREATE INDEX posts_conversation_author ON posts (conversation_id, author_id);
