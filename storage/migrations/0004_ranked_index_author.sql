-- The ranked children index carries author_id, so that the head of a reply list (replies by
-- accounts the viewer follows, among the top of the list) is found by an index-only scan of a
-- bounded window instead of heap visits.
DROP INDEX posts_children_ranked;
CREATE INDEX posts_children_ranked ON posts (conversation_id, in_reply_to_id, section, rank_key, id)
    INCLUDE (author_id) WHERE listed AND in_reply_to_id IS NOT NULL;
