-- How an operator routes the audience of a channel's screen shares: 'auto' (the handoff policy
-- decides), 'webrtc' (never to HLS) or 'broadcast' (to HLS now).

ALTER TABLE channels ADD COLUMN share_routing text NOT NULL DEFAULT 'auto';
