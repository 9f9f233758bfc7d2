-- The password of the renter's account on the device, which the device's agent sets in its start hook.
-- It is not the jump secret (`login_secret_enc`): a device's owner sees what its hooks are given, and must
-- not learn a secret that also logs in to our jump host as the renter. Sealed like the other secrets.
-- Rentals started before this column have none; their hooks were given the jump secret, and still are.
ALTER TABLE rentals ADD COLUMN device_password_enc bytea;
