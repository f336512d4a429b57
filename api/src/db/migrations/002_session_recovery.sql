-- Crash recovery of voice session history. A session row now names the peer it was on its node,
-- and when the api last learned it was live (its join, or the node replaying it after a
-- register). Rows of a node are closed when it is marked down, or when it registers again and
-- replays the sessions it still serves; seen_at keeps those closes from ending a session that
-- was confirmed after the decision to close was taken.

ALTER TABLE session_history ADD COLUMN peer_id uuid;
ALTER TABLE session_history ADD COLUMN seen_at timestamptz;
UPDATE session_history SET seen_at = joined_at;
ALTER TABLE session_history ALTER COLUMN seen_at SET NOT NULL;
ALTER TABLE session_history ALTER COLUMN seen_at SET DEFAULT now();

-- One open row per peer of a node: a replayed session finds and keeps its row.
CREATE UNIQUE INDEX session_history_open_peer_key ON session_history (node_id, peer_id)
  WHERE left_at IS NULL;

-- Open rows by node, for closing a node's sessions and finding those of vanished nodes.
CREATE INDEX session_history_open_node_idx ON session_history (node_id) WHERE left_at IS NULL;
