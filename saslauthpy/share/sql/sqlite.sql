-- saslauthpy built-in users table, SQLite.
-- saslauthpy creates it by itself on first use; this file is for those who create it by hand:
--   sqlite3 /var/lib/saslauthpy/users.db < sqlite.sql
-- realm is '' for users without a realm; created/changed are UTC.
CREATE TABLE IF NOT EXISTS saslauthpy_users (
    id       INTEGER      NOT NULL PRIMARY KEY AUTOINCREMENT,
    login    VARCHAR(255) NOT NULL,
    realm    VARCHAR(255) NOT NULL DEFAULT '',
    password VARCHAR(512) NOT NULL,   -- a hash with its scheme: $2b$..., {SHA512-CRYPT}$6$...
    enabled  BOOLEAN      NOT NULL DEFAULT 1,
    created  DATETIME     NOT NULL,
    changed  DATETIME     NOT NULL,
    CONSTRAINT saslauthpy_users_login_realm UNIQUE (login, realm)
);
