-- Provisioning by the device agent's hooks. A device whose agent reports hooks (`provisioner`) gets each
-- rental's start and end run on the device: `start_hook` / `end_hook` go pending -> done | failed, with the
-- hook's last words in `hook_message`. The renter's access waits for the start hook; the device is not let
-- again until the end hook has run.
ALTER TABLE devices ADD COLUMN provisioner boolean NOT NULL DEFAULT false;

ALTER TABLE rentals ADD COLUMN start_hook text CHECK (start_hook IN ('pending', 'done', 'failed'));
ALTER TABLE rentals ADD COLUMN end_hook text CHECK (end_hook IN ('pending', 'done', 'failed'));
ALTER TABLE rentals ADD COLUMN hook_message text CHECK (char_length(hook_message) <= 500);
ALTER TABLE rentals ADD CONSTRAINT rentals_end_hook_after_start CHECK (end_hook IS NULL OR start_hook IS NOT NULL);

-- Every way a rental starts or ends (granted, sold, renewed, expired, refunded...) passes here, so no code
-- path can forget a hook: a rental becoming active on a provisioner device waits for its start hook, and a
-- provisioned rental leaving for good waits for its end hook.
CREATE FUNCTION rentals_hooks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'active' AND (TG_OP = 'INSERT' OR OLD.state <> 'active') AND NEW.start_hook IS NULL
       AND (SELECT provisioner FROM devices WHERE id = NEW.device_id) THEN
        NEW.start_hook := 'pending';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.state IN ('ended', 'refunded', 'cancelled')
       AND OLD.state NOT IN ('ended', 'refunded', 'cancelled')
       AND NEW.start_hook IS NOT NULL AND NEW.end_hook IS NULL THEN
        NEW.end_hook := 'pending';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER rentals_hooks BEFORE INSERT OR UPDATE OF state ON rentals FOR EACH ROW EXECUTE FUNCTION rentals_hooks();

CREATE INDEX rentals_hooks_pending ON rentals (device_id) WHERE start_hook = 'pending' OR end_hook = 'pending';
