-- The whole data model. Rules that protect data live here as constraints, not only in code, so a bug or a
-- hand-written query cannot store what the application would refuse.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL UNIQUE
                  CHECK (email = lower(btrim(email)) AND char_length(email) BETWEEN 3 AND 254 AND email LIKE '_%@_%._%'),
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    role          text NOT NULL CHECK (role IN ('owner', 'renter', 'admin')),
    disabled      boolean NOT NULL DEFAULT false,
    -- Set for generated passwords (the first admin): the dashboard asks for a new one.
    must_change_password boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Log-in sessions (cookie) and API tokens (bearer). Only the SHA-256 of the 32-byte random token is stored.
CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('cookie', 'bearer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    CHECK (expires_at > created_at)
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE devices (
    id              uuid PRIMARY KEY,
    owner_id        uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    name            text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 64 AND name = btrim(name)),
    description     text NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000),
    -- Hardware facts as reported by the owner now, by the agent later.
    cpu_model       text CHECK (char_length(cpu_model) <= 200),
    cpu_cores       integer CHECK (cpu_cores BETWEEN 1 AND 4096),
    memory_mb       integer CHECK (memory_mb BETWEEN 1 AND 16777216),
    disk_gb         integer CHECK (disk_gb BETWEEN 1 AND 1048576),
    arch            text CHECK (char_length(arch) <= 32),
    internet_mbps   integer CHECK (internet_mbps BETWEEN 1 AND 1000000),
    -- Price of one rental period, in minor units. Both or neither.
    price_minor     bigint CHECK (price_minor > 0 AND price_minor <= 100000000000),
    currency        text CHECK (currency ~ '^[A-Z]{3,5}$'),
    rental_hours    integer NOT NULL DEFAULT 24 CHECK (rental_hours BETWEEN 1 AND 8760),
    for_rent        boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'online', 'offline')),
    last_seen       timestamptz,
    -- Stable for the device's whole life: a reboot or a server restart never moves it.
    tunnel_port     integer NOT NULL CHECK (tunnel_port BETWEEN 1024 AND 65535),
    subdomain       text NOT NULL CHECK (subdomain ~ '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$'),
    -- SHA-256 of a 32-byte random credential (high entropy, so a slow hash adds nothing).
    credential_hash bytea NOT NULL CHECK (octet_length(credential_hash) = 32),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Deleted devices are kept (their rentals and ledger entries refer to them) but free their name, port and
    -- subdomain, and can no longer authenticate.
    deleted_at      timestamptz,
    CHECK ((price_minor IS NULL) = (currency IS NULL)),
    CONSTRAINT devices_for_rent_needs_price CHECK (NOT for_rent OR price_minor IS NOT NULL)
);
CREATE UNIQUE INDEX devices_owner_name ON devices (owner_id, name) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX devices_tunnel_port ON devices (tunnel_port) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX devices_subdomain ON devices (subdomain) WHERE deleted_at IS NULL;
CREATE INDEX devices_owner ON devices (owner_id, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX devices_all ON devices (created_at, id) WHERE deleted_at IS NULL;

CREATE TABLE device_ssh_keys (
    device_id   uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    -- OpenSSH "SHA256:..." fingerprint of the key.
    fingerprint text NOT NULL CHECK (fingerprint LIKE 'SHA256:%'),
    public_key  text NOT NULL CHECK (char_length(public_key) <= 16384),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, fingerprint)
);

-- Every status change, for uptime charts and records.
CREATE TABLE device_status_history (
    id        bigserial PRIMARY KEY,
    device_id uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    status    text NOT NULL CHECK (status IN ('new', 'online', 'offline')),
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_status_history_device ON device_status_history (device_id, at);

CREATE TABLE rentals (
    id               uuid PRIMARY KEY,
    device_id        uuid NOT NULL REFERENCES devices (id) ON DELETE RESTRICT,
    -- A dashboard user, or (for marketplace sales before the buyer claims it) only a buyer reference.
    renter_id        uuid REFERENCES users (id) ON DELETE SET NULL,
    buyer_ref        text CHECK (char_length(buyer_ref) <= 200),
    marketplace      text NOT NULL CHECK (marketplace IN ('admin', 'direct', 'openbazaar')),
    order_ref        text NOT NULL CHECK (char_length(order_ref) BETWEEN 1 AND 200),
    state            text NOT NULL CHECK (state IN ('ordered', 'paid', 'provisioning', 'active', 'ending', 'ended', 'refunded', 'cancelled')),
    price_minor      bigint NOT NULL CHECK (price_minor >= 0),
    currency         text NOT NULL CHECK (currency ~ '^[A-Z]{3,5}$'),
    starts_at        timestamptz,
    ends_at          timestamptz,
    -- The renter's login name and its secret; the secret encrypted (XChaCha20-Poly1305) with the server key.
    login_name       text CHECK (login_name ~ '^[a-z][a-z0-9_-]{2,31}$'),
    login_secret_enc bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- Each marketplace order becomes at most one rental, however often it is seen.
    UNIQUE (marketplace, order_ref),
    CHECK (renter_id IS NOT NULL OR buyer_ref IS NOT NULL),
    CHECK (ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at),
    CHECK ((login_name IS NULL) = (login_secret_enc IS NULL))
);
-- A device is rented to at most one rental at a time.
CREATE UNIQUE INDEX rentals_one_live_per_device ON rentals (device_id)
    WHERE state IN ('paid', 'provisioning', 'active', 'ending');
CREATE INDEX rentals_renter ON rentals (renter_id, created_at);
CREATE UNIQUE INDEX rentals_login_name ON rentals (login_name) WHERE login_name IS NOT NULL;

CREATE TABLE listings (
    id           uuid PRIMARY KEY,
    device_id    uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    marketplace  text NOT NULL CHECK (marketplace IN ('direct', 'openbazaar')),
    -- The listing's identifier on the marketplace (an OpenBazaar slug).
    external_ref text NOT NULL CHECK (char_length(external_ref) BETWEEN 1 AND 200),
    state        text NOT NULL CHECK (state IN ('listed', 'withdrawn')),
    price_minor  bigint NOT NULL CHECK (price_minor > 0),
    currency     text NOT NULL CHECK (currency ~ '^[A-Z]{3,5}$'),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (marketplace, device_id),
    UNIQUE (marketplace, external_ref)
);

CREATE TABLE payments (
    id           uuid PRIMARY KEY,
    rental_id    uuid NOT NULL REFERENCES rentals (id) ON DELETE RESTRICT,
    provider     text NOT NULL CHECK (char_length(provider) BETWEEN 1 AND 50),
    external_ref text NOT NULL CHECK (char_length(external_ref) BETWEEN 1 AND 200),
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    currency     text NOT NULL CHECK (currency ~ '^[A-Z]{3,5}$'),
    state        text NOT NULL CHECK (state IN ('pending', 'confirmed', 'refunded', 'failed')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, external_ref)
);

-- Double-entry ledger: every movement is a set of rows sharing a transaction id whose amounts sum to zero
-- per currency. Append-only (see the trigger below).
CREATE TABLE ledger_entries (
    id           bigserial PRIMARY KEY,
    txn_id       uuid NOT NULL,
    -- 'platform', 'owner:<uuid>', 'renter:<uuid>', 'marketplace:<name>'
    account      text NOT NULL CHECK (account ~ '^(platform|owner:[0-9a-f-]{36}|renter:[0-9a-f-]{36}|marketplace:[a-z]+)$'),
    amount_minor bigint NOT NULL CHECK (amount_minor <> 0),
    currency     text NOT NULL CHECK (currency ~ '^[A-Z]{3,5}$'),
    rental_id    uuid REFERENCES rentals (id) ON DELETE RESTRICT,
    payment_id   uuid REFERENCES payments (id) ON DELETE RESTRICT,
    memo         text NOT NULL DEFAULT '' CHECK (char_length(memo) <= 500),
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_account ON ledger_entries (account, at);
CREATE INDEX ledger_entries_txn ON ledger_entries (txn_id);

-- Who changed what. Append-only; the actor is kept by label when the user is later removed.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    uuid REFERENCES users (id) ON DELETE SET NULL,
    actor_label text NOT NULL CHECK (char_length(actor_label) BETWEEN 1 AND 300),
    action      text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    target_type text NOT NULL CHECK (char_length(target_type) BETWEEN 1 AND 50),
    target_id   text NOT NULL CHECK (char_length(target_id) BETWEEN 1 AND 100),
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at ON audit_log (at, id);

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
-- The audit log may lose its actor link (ON DELETE SET NULL) but nothing else.
CREATE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.at <> OLD.at OR NEW.actor_label <> OLD.actor_label OR NEW.action <> OLD.action
       OR NEW.target_type <> OLD.target_type OR NEW.target_id <> OLD.target_id OR NEW.detail <> OLD.detail
       OR NEW.actor_id IS NOT NULL THEN
        RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_guard();

-- Balanced transactions: checked when the inserting transaction commits.
CREATE FUNCTION ledger_txn_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_entries WHERE txn_id = NEW.txn_id
               GROUP BY currency HAVING sum(amount_minor) <> 0) THEN
        RAISE EXCEPTION 'ledger transaction % does not balance', NEW.txn_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_txn_balanced();
