-- A marketplace buyer has no account here when the order arrives: the delivery carries a claim link. Its
-- token is kept encrypted (so a retried delivery sends the same link) and as SHA-256 (to find the rental
-- when someone claims it); both are cleared once claimed.
ALTER TABLE rentals ADD COLUMN claim_hash bytea CHECK (octet_length(claim_hash) = 32);
ALTER TABLE rentals ADD COLUMN claim_secret_enc bytea;
ALTER TABLE rentals ADD CONSTRAINT rentals_claim_pair CHECK ((claim_hash IS NULL) = (claim_secret_enc IS NULL));
CREATE UNIQUE INDEX rentals_claim_hash ON rentals (claim_hash) WHERE claim_hash IS NOT NULL;
