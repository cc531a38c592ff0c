-- HTTP Digest (RFC 7616) needs H(A1) = H(username ":" realm ":" password) per account and
-- algorithm; argon2 hashes cannot give it. Written by `cpm-nms account add` while Digest is
-- on (or with --digest), for the realm configured then. NULL: Digest is not possible for
-- the account (Basic still is). These values are password-equivalent for Digest.
ALTER TABLE accounts ADD COLUMN digest_realm TEXT;
ALTER TABLE accounts ADD COLUMN digest_ha1_sha256 TEXT;
ALTER TABLE accounts ADD COLUMN digest_ha1_md5 TEXT;
