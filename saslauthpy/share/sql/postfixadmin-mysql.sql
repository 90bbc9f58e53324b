-- The part of PostfixAdmin's schema saslauthpy reads: the mailbox table (MariaDB / MySQL).
-- Used by the tests and as an example; a real PostfixAdmin install already has it.
-- saslauthpy config:
--   [sql]
--   url = "mysql+pymysql://saslauthpy@127.0.0.1/postfixadmin"
--   query = "SELECT password, active FROM mailbox WHERE username = :address"
-- PostfixAdmin's collation is case-insensitive: ALICE@EXAMPLE.COM finds alice@example.com.
CREATE TABLE IF NOT EXISTS mailbox (
    username   VARCHAR(255) NOT NULL,
    password   VARCHAR(255) NOT NULL,
    name       VARCHAR(255) NOT NULL DEFAULT '',
    maildir    VARCHAR(255) NOT NULL DEFAULT '',
    quota      BIGINT       NOT NULL DEFAULT 0,
    local_part VARCHAR(255) NOT NULL,
    domain     VARCHAR(255) NOT NULL,
    created    DATETIME     NOT NULL DEFAULT '2000-01-01 00:00:00',
    modified   DATETIME     NOT NULL DEFAULT '2000-01-01 00:00:00',
    active     TINYINT(1)   NOT NULL DEFAULT 1,
    PRIMARY KEY (username),
    KEY domain (domain)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
