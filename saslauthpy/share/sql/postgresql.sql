-- saslauthpy built-in users table, PostgreSQL.
-- saslauthpy creates it on first use when its role may CREATE in the schema; a DBA who
-- prefers to create it and grant only what is needed:
--   psql -d mail -f postgresql.sql
--   GRANT SELECT ON saslauthpy_users TO saslauthpy_daemon;          -- the daemon only reads
--   GRANT SELECT, INSERT, UPDATE, DELETE ON saslauthpy_users TO saslauthpy_admin;
--   GRANT USAGE ON SEQUENCE saslauthpy_users_id_seq TO saslauthpy_admin;
-- realm is '' for users without a realm; created/changed are UTC.
CREATE TABLE IF NOT EXISTS saslauthpy_users (
    id       SERIAL       NOT NULL PRIMARY KEY,
    login    VARCHAR(255) NOT NULL,
    realm    VARCHAR(255) NOT NULL DEFAULT '',
    password VARCHAR(512) NOT NULL,   -- a hash with its scheme: $2b$..., {SHA512-CRYPT}$6$...
    enabled  BOOLEAN      NOT NULL DEFAULT true,
    created  TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    changed  TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    CONSTRAINT saslauthpy_users_login_realm UNIQUE (login, realm)
);
