-- Events keep their record (`data`) and the columns a CloudEvent is rendered from when it
-- is read; the envelope is the host's to render (one module owns the output format), so
-- the store no longer keeps a rendered copy. Provenance (driver, version, provider ids)
-- comes from the raw event each event points to.
ALTER TABLE events ADD COLUMN data TEXT NOT NULL DEFAULT 'null';
UPDATE events SET data = COALESCE(json_extract(body, '$.data'), 'null');
ALTER TABLE events DROP COLUMN body;

