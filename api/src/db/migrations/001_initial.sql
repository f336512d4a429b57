-- Accounts, channels and their grants, stream keys, sessions, and the history of streams and
-- voice sessions. Times are timestamptz; secrets are stored only as hashes.

CREATE TABLE users (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  username text NOT NULL,
  display_name text NOT NULL,
  -- scrypt with its parameters and salt: "scrypt$<log2 N>$<r>$<p>$<salt>$<key>".
  password_hash text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  disabled_at timestamptz
);

-- Usernames are unique whatever their case: "Alice" and "alice" are one account.
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));

CREATE TABLE channels (
  name text PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  created_by uuid REFERENCES users (id) ON DELETE SET NULL
);

-- Grants an account holds beyond the server's defaults, in one channel or in every channel ('*').
-- The channel is not a foreign key: grants may be given before the channel is first opened.
CREATE TABLE memberships (
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  channel text NOT NULL,
  grants text[] NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, channel),
  CONSTRAINT memberships_grants_known CHECK (
    grants <@ ARRAY['join', 'speak', 'screen-share', 'moderate', 'stream']::text[]
  )
);

CREATE INDEX memberships_channel_idx ON memberships (channel);

-- One key per channel; the secret is kept as its SHA-256 only.
CREATE TABLE stream_keys (
  id text PRIMARY KEY,
  channel text NOT NULL UNIQUE REFERENCES channels (name) ON DELETE CASCADE,
  secret_hash bytea NOT NULL,
  created_at timestamptz NOT NULL,
  last_used_at timestamptz
);

-- Refresh tokens, hashed. Each login starts a family; each refresh uses one token up and issues
-- the next of its family. A used token presented again means it leaked: the family is revoked.
CREATE TABLE refresh_tokens (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  family_id uuid NOT NULL,
  token_hash bytea NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  used_at timestamptz,
  revoked_at timestamptz
);

CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- One row per stream accepted by an ingest node. No foreign keys: history outlives channels.
CREATE TABLE stream_history (
  id uuid PRIMARY KEY,
  channel text NOT NULL,
  key_id text NOT NULL,
  publisher_ip text NOT NULL,
  storage_prefix text NOT NULL,
  renditions jsonb NOT NULL DEFAULT '[]'::jsonb,
  started_at timestamptz NOT NULL,
  live_at timestamptz,
  ended_at timestamptz,
  end_reason text
);

CREATE INDEX stream_history_channel_idx ON stream_history (channel, started_at DESC);

-- One row per voice session. user_id is text: guests have generated ids that are not accounts.
CREATE TABLE session_history (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id text NOT NULL,
  display_name text NOT NULL,
  channel text NOT NULL,
  node_id text NOT NULL,
  joined_at timestamptz NOT NULL,
  left_at timestamptz
);

CREATE INDEX session_history_channel_idx ON session_history (channel, joined_at DESC);
CREATE INDEX session_history_user_idx ON session_history (user_id, joined_at DESC);
