-- Whether the device's web server is published at its subdomain through the gateway. On by default (a
-- published subdomain is the renter's website, as on any tunnel service); the owner may switch it off.
ALTER TABLE devices ADD COLUMN web_publishing boolean NOT NULL DEFAULT true;
