-- saslauthpy built-in users table, MariaDB / MySQL.
-- saslauthpy creates it on first use when its user has CREATE; otherwise:
--   mariadb mail < mysql.sql
--   GRANT SELECT ON mail.saslauthpy_users TO 'saslauthpy'@'localhost';   -- the daemon
-- utf8mb4_bin makes logins case-sensitive, as in SQLite and PostgreSQL.
-- realm is '' for users without a realm; created/changed are UTC.
CREATE TABLE IF NOT EXISTS saslauthpy_users (
    id       INTEGER      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    login    VARCHAR(255) NOT NULL,
    realm    VARCHAR(255) NOT NULL DEFAULT '',
    password VARCHAR(512) NOT NULL,   -- a hash with its scheme: $2b$..., {SHA512-CRYPT}$6$...
    enabled  BOOL         NOT NULL DEFAULT 1,
    created  DATETIME     NOT NULL,
    changed  DATETIME     NOT NULL,
    CONSTRAINT saslauthpy_users_login_realm UNIQUE (login, realm)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
