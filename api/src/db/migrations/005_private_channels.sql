-- Private channels are for members only: accounts with a membership in the channel holding
-- `join`, server-wide moderators and the operator. Their HLS objects are stored under
-- `private/<channel>/`, which the CDN edge serves only through signed, expiring paths.

ALTER TABLE channels ADD COLUMN private boolean NOT NULL DEFAULT false;
