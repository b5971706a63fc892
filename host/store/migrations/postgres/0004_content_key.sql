-- A second deduplication key: the SHA-256 of the event type and the payload as the provider
-- sent it (see `commit::batch::content_key`). Shopify signs only the body; its webhook id
-- is an unsigned header, so a captured delivery replayed under a new id would otherwise be
-- stored again. Rows written before this migration have no key (NULLs are distinct in a
-- unique index), so they are deduplicated by provider event id only, as before.
ALTER TABLE raw_events ADD COLUMN content_sha256 BYTEA;
CREATE UNIQUE INDEX raw_events_installation_content ON raw_events (installation_id, content_sha256);
