-- The heaviest screen-share preset a channel allows (one of SHARE_PRESET_IDS in the protocol);
-- 'source' allows every preset.

ALTER TABLE channels ADD COLUMN max_share_preset text NOT NULL DEFAULT 'source';
