"""A PostfixAdmin-shaped ``mailbox`` table filled with the reference tools' hashes."""

from __future__ import annotations

from pathlib import Path

from sql_servers import run_sql_file
from sqlalchemy import create_engine, text

DDL = Path(__file__).resolve().parents[2] / "saslauthpy" / "share" / "sql"
QUERY = "SELECT password, active FROM mailbox WHERE username = :address"
INJECTIONS = ["' OR '1'='1", "alice'--", "%", "_", "alice@example.com' OR '1'='1",
              "%@example.com", "_lice@example.com", "x'; DELETE FROM mailbox; --"]


def mailbox_ddl(url: str) -> Path:
    return DDL / ("postfixadmin-postgresql.sql" if url.startswith("postgresql")
                  else "postfixadmin-mysql.sql")


def fill_mailbox(url: str, hashes: dict[str, tuple[str, str]]) -> dict[str, str]:
    """One active mailbox per scheme plus an inactive one; returns address -> password."""
    run_sql_file(url, mailbox_ddl(url))
    users = {}
    rows = []
    for i, (_scheme, (pw, hashed)) in enumerate(sorted(hashes.items())):
        local = f"user{i}"
        users[f"{local}@example.com"] = pw
        rows.append({"u": f"{local}@example.com", "p": hashed, "l": local, "a": True})
    pw, hashed = hashes["SHA512-CRYPT"]
    rows.append({"u": "inactive@example.com", "p": hashed, "l": "inactive", "a": False})
    rows.append({"u": "alice@example.com", "p": hashes["BLF-CRYPT"][1], "l": "alice",
                 "a": True})
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO mailbox (username, password, local_part, domain, active)"
                          " VALUES (:u, :p, :l, 'example.com', :a)"), rows)
    engine.dispose()
    users["inactive@example.com"] = pw
    return users


def count_mailboxes(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM mailbox")).scalar_one()
    engine.dispose()
    return n
