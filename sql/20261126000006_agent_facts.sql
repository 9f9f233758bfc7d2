-- What the device agent reports about the machine besides its hardware (kept in the existing columns):
-- its operating system and the agent's version, and when it last reported.
ALTER TABLE devices ADD COLUMN os text CHECK (char_length(os) <= 200);
ALTER TABLE devices ADD COLUMN agent_version text CHECK (char_length(agent_version) <= 50);
ALTER TABLE devices ADD COLUMN facts_reported_at timestamptz;
