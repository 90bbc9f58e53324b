-- The part of PostfixAdmin's schema saslauthpy reads: the mailbox table (PostgreSQL).
-- Used by the tests and as an example; a real PostfixAdmin install already has it.
-- saslauthpy config:
--   [sql]
--   url = "postgresql+psycopg://saslauthpy@127.0.0.1/postfixadmin"
--   query = "SELECT password, active FROM mailbox WHERE username = :address"
CREATE TABLE IF NOT EXISTS mailbox (
    username   VARCHAR(255) NOT NULL PRIMARY KEY,   -- the full address: alice@example.com
    password   VARCHAR(255) NOT NULL,               -- {SHA512-CRYPT}$6$..., {BLF-CRYPT}$2y$..., ...
    name       VARCHAR(255) NOT NULL DEFAULT '',
    maildir    VARCHAR(255) NOT NULL DEFAULT '',
    quota      BIGINT       NOT NULL DEFAULT 0,
    local_part VARCHAR(255) NOT NULL,
    domain     VARCHAR(255) NOT NULL,
    created    TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    modified   TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    active     BOOLEAN      NOT NULL DEFAULT true
);
CREATE INDEX IF NOT EXISTS mailbox_domain_idx ON mailbox (domain);
