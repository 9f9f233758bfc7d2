-- A device's public id in the storefront: random and unrelated to the device id, which is the device's
-- login name and so is never shown to anyone but its owner and admins.
ALTER TABLE devices ADD COLUMN offer_id uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE devices ADD CONSTRAINT devices_offer_id_key UNIQUE (offer_id);
