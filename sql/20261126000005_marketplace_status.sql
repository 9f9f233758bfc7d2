-- How each marketplace's last passes went, written by the instance leading the selling work, read by
-- admins (the `marketplaces` query): when it last ran, last succeeded, and why it failed if it did.
CREATE TABLE marketplace_status (
    marketplace          text PRIMARY KEY CHECK (marketplace IN ('openbazaar')),
    last_pass_at         timestamptz NOT NULL,
    last_success_at      timestamptz,
    last_error           text CHECK (char_length(last_error) <= 1000),
    last_error_at        timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0)
);
