-- Crash recovery of stream history. A stream row names the ingest node that ran it, so the rows
-- a dead node left open are closed when it is marked down, when it registers again and replays
-- the streams it still runs, or by the periodic sweep of nodes no longer up. Rows from before
-- this migration have no node and are closed by that sweep.

ALTER TABLE stream_history ADD COLUMN node_id text;

-- Open rows by node, for closing a node's streams and finding those of vanished nodes.
CREATE INDEX stream_history_open_node_idx ON stream_history (node_id) WHERE ended_at IS NULL;
