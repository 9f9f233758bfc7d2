-- The direct storefront: a renter orders a device, pays through a payment provider, and the rental starts
-- when the payment is confirmed. An open order reserves the device (one at a time) until it is paid,
-- cancelled or left unpaid too long.
CREATE UNIQUE INDEX rentals_one_open_order_per_device ON rentals (device_id) WHERE state = 'ordered';
CREATE INDEX rentals_open_orders ON rentals (created_at) WHERE state = 'ordered';

-- What the renter is told to do to pay (the provider's words, or its checkout address).
ALTER TABLE payments ADD COLUMN instructions text NOT NULL DEFAULT '' CHECK (char_length(instructions) <= 2000);
ALTER TABLE payments ADD COLUMN checkout_url text CHECK (char_length(checkout_url) <= 2000);
-- Who confirmed a manual payment, for the record (the audit log has the details).
ALTER TABLE payments ADD COLUMN confirmed_by uuid REFERENCES users (id) ON DELETE SET NULL;
-- An order's payment, or a renewal's (an active rental extended by one more period once it is paid).
ALTER TABLE payments ADD COLUMN purpose text NOT NULL DEFAULT 'order' CHECK (purpose IN ('order', 'renewal'));
-- One payment waiting at a time per rental.
CREATE UNIQUE INDEX payments_one_pending_per_rental ON payments (rental_id) WHERE state = 'pending';
