-- Events keep their record (`data`) and the columns a CloudEvent is rendered from when it
-- is read; the envelope is the host's to render (one module owns the output format), so
-- the store no longer keeps a rendered copy. Provenance (driver, version, provider ids)
-- comes from the raw event each event points to.
ALTER TABLE events ADD COLUMN data TEXT;
UPDATE events SET data = COALESCE((body::jsonb -> 'data')::text, 'null');
ALTER TABLE events ALTER COLUMN data SET NOT NULL;
ALTER TABLE events DROP COLUMN body;

