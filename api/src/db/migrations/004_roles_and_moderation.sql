-- Roles, bans and lasting server mutes.
--
-- An account is the owner, an admin or a member; moderators are members holding the `moderate`
-- grant (server-wide, or in one channel). There is at most one owner: the first account
-- registered on a fresh install, or the one the operator names with the CLI.

ALTER TABLE users ADD COLUMN role text NOT NULL DEFAULT 'member'
  CONSTRAINT users_role_known CHECK (role IN ('owner', 'admin', 'member'));

CREATE UNIQUE INDEX users_single_owner_key ON users (role) WHERE role = 'owner';

-- Accounts given every grant server-wide before roles existed were admins in all but name.
UPDATE users SET role = 'admin'
WHERE id IN (
  SELECT user_id FROM memberships
  WHERE channel = '*'
    AND grants @> ARRAY['join', 'speak', 'screen-share', 'moderate', 'stream']::text[]
);

-- Bans, per account or per guest session (user_id is text: guests' ids are not accounts), in one
-- channel or in every channel ('*'). No foreign keys: a ban outlives the channel's deletion.
CREATE TABLE bans (
  scope text NOT NULL,
  user_id text NOT NULL,
  display_name text NOT NULL,
  banned_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (scope, user_id)
);

CREATE INDEX bans_user_idx ON bans (user_id);

-- Server mutes of accounts that outlive their sessions: a rejoin starts muted.
CREATE TABLE server_mutes (
  channel text NOT NULL,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  muted_by text,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (channel, user_id)
);
