-- Marketplace orders that were not turned into rentals because they were not paid in full: not funded,
-- paid in another currency than the listing's, paid less than the listing's price, or with no amount the
-- marketplace would state. Never delivered; each recorded once (the audit log has an `order.refuse`
-- entry for it too). An order refused as `unfunded` is examined again only when the marketplace
-- announces that it has been funded; if it is then paid in full it becomes a rental and its row here goes.
CREATE TABLE refused_orders (
    marketplace   text NOT NULL CHECK (marketplace IN ('openbazaar')),
    order_ref     text NOT NULL CHECK (char_length(order_ref) BETWEEN 1 AND 200),
    -- The listing the order bought, and its device (kept when the device is deleted, as a name).
    listing       text NOT NULL CHECK (char_length(listing) <= 200),
    device_id     uuid REFERENCES devices (id) ON DELETE SET NULL,
    reason        text NOT NULL CHECK (reason IN ('unfunded', 'unknown_amount', 'wrong_currency', 'underpaid')),
    -- What was paid and what was asked, in words (e.g. `paid 2.00 USD, the listing's price is 3.00 USD`).
    detail        text NOT NULL CHECK (char_length(detail) <= 500),
    paid_minor    bigint,
    paid_currency text CHECK (paid_currency ~ '^[A-Z]{3,5}$'),
    price_minor   bigint NOT NULL CHECK (price_minor > 0),
    currency      text NOT NULL CHECK (currency ~ '^[A-Z]{3,5}$'),
    refused_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (marketplace, order_ref),
    CHECK ((paid_minor IS NULL) = (paid_currency IS NULL))
);
CREATE INDEX refused_orders_by_time ON refused_orders (refused_at DESC);
