-- The provider API version that rendered a raw event's payload, when the delivery said so
-- outside the payload (Shopify's X-Shopify-API-Version header), so a later re-normalization
-- reads the payload as the version that wrote it. NULL for older rows and for providers
-- whose payload names its own version.
ALTER TABLE raw_events ADD COLUMN api_version TEXT;
