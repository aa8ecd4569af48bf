"""account references by trigger: vpp_license and vpp_user refer to their account through
triggers instead of foreign keys.

A foreign key checks every inserted row on its own: on PostgreSQL the check of a full sync's
300,000 licenses cost 0.7-0.8 s of the server's time (a third of their insert), and 0.25 s for
100,000 users. The same guarantees hold by trigger, checked once per statement:

- PostgreSQL: a statement-level trigger reads the statement's new rows (a transition table),
  locks each account they name ``FOR KEY SHARE`` (as the foreign key's check does) and fails
  with ``foreign_key_violation`` (an ``IntegrityError``) when one does not exist; an update
  that moves rows to another account is checked row by row.
- SQLite: a row trigger refuses the row (``RAISE(ABORT)``, an ``IntegrityError``), as the
  foreign key did.
- Both: deleting an account deletes its licenses and users (the foreign key's ``ON DELETE
  CASCADE``); changing the id of an account that still has some fails (its ``NO ACTION``).

A later migration that rebuilds one of these tables on SQLite (copy, drop, rename) drops its
triggers with it and must create them again (``create_triggers`` below);
tests/vpp/test_account_references.py fails otherwise.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 22:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("vpp_license", "vpp_user")
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}

POSTGRES_FUNCTIONS = (
    """
CREATE FUNCTION vpp_account_referenced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    wanted integer;
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        PERFORM 1 FROM vpp_account WHERE id = NEW.account_id FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE foreign_key_violation USING MESSAGE = format('%s refers to account %s, which does not exist', TG_TABLE_NAME, NEW.account_id);
        END IF;
        RETURN NULL;
    END IF;
    FOR wanted IN SELECT DISTINCT account_id FROM new_rows LOOP
        PERFORM 1 FROM vpp_account WHERE id = wanted FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE foreign_key_violation USING MESSAGE = format('%s refers to account %s, which does not exist', TG_TABLE_NAME, wanted);
        END IF;
    END LOOP;
    RETURN NULL;
END $$
""",
    """
CREATE FUNCTION vpp_account_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM vpp_license WHERE account_id = OLD.id;
    DELETE FROM vpp_user WHERE account_id = OLD.id;
    RETURN NULL;
END $$
""",
    """
CREATE FUNCTION vpp_account_renumbered() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM vpp_license WHERE account_id = OLD.id) OR EXISTS (SELECT 1 FROM vpp_user WHERE account_id = OLD.id) THEN
        RAISE foreign_key_violation USING MESSAGE = format('account %s still has licenses or users', OLD.id);
    END IF;
    RETURN NULL;
END $$
""",
)


def _postgres_triggers() -> list[str]:
    statements = []
    for table in TABLES:
        statements += [
            f"CREATE TRIGGER {table}_account_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION vpp_account_referenced()",
            f"CREATE TRIGGER {table}_account_update AFTER UPDATE OF account_id ON {table} "
            "FOR EACH ROW WHEN (OLD.account_id IS DISTINCT FROM NEW.account_id) EXECUTE FUNCTION vpp_account_referenced()",
        ]
    return [
        *statements,
        "CREATE TRIGGER vpp_account_cascade AFTER DELETE ON vpp_account FOR EACH ROW EXECUTE FUNCTION vpp_account_deleted()",
        "CREATE TRIGGER vpp_account_renumber AFTER UPDATE OF id ON vpp_account FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) "
        "EXECUTE FUNCTION vpp_account_renumbered()",
    ]


def _sqlite_triggers() -> list[str]:
    statements = []
    for table in TABLES:
        missing = "NOT EXISTS (SELECT 1 FROM vpp_account WHERE id = NEW.account_id)"
        refuse = "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed'); END"
        statements += [
            f"CREATE TRIGGER {table}_account_insert BEFORE INSERT ON {table} WHEN {missing} {refuse}",
            f"CREATE TRIGGER {table}_account_update BEFORE UPDATE OF account_id ON {table} WHEN {missing} {refuse}",
        ]
    referenced = " OR ".join(f"EXISTS (SELECT 1 FROM {t} WHERE account_id = OLD.id)" for t in TABLES)
    return [
        *statements,
        "CREATE TRIGGER vpp_account_cascade AFTER DELETE ON vpp_account BEGIN "
        + " ".join(f"DELETE FROM {t} WHERE account_id = OLD.id;" for t in TABLES)
        + " END",
        f"CREATE TRIGGER vpp_account_renumber BEFORE UPDATE OF id ON vpp_account WHEN OLD.id IS NOT NEW.id AND ({referenced}) "
        "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed'); END",
    ]


def create_triggers(dialect: str) -> None:
    """The triggers (and on PostgreSQL their functions) that keep the account references."""
    if dialect == "postgresql":
        for statement in POSTGRES_FUNCTIONS:
            op.execute(statement)
    for statement in _postgres_triggers() if dialect == "postgresql" else _sqlite_triggers():
        op.execute(statement)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in TABLES:
        if dialect == "postgresql":
            op.drop_constraint(f"{table}_account_id_fkey", table, type_="foreignkey")
        else:  # SQLite: the table is rebuilt without it
            with op.batch_alter_table(table, naming_convention=NAMING, recreate="always") as batch_op:
                batch_op.drop_constraint(f"fk_{table}_account_id_vpp_account", type_="foreignkey")
    create_triggers(dialect)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in TABLES:
        for name in (f"{table}_account_insert", f"{table}_account_update"):
            op.execute(f"DROP TRIGGER {name} ON {table}" if dialect == "postgresql" else f"DROP TRIGGER {name}")
    for name in ("vpp_account_cascade", "vpp_account_renumber"):
        op.execute(f"DROP TRIGGER {name} ON vpp_account" if dialect == "postgresql" else f"DROP TRIGGER {name}")
    if dialect == "postgresql":
        for function in ("vpp_account_referenced", "vpp_account_deleted", "vpp_account_renumbered"):
            op.execute(f"DROP FUNCTION {function}()")
    for table in TABLES:
        if dialect == "postgresql":
            op.create_foreign_key(f"{table}_account_id_fkey", table, "vpp_account", ["account_id"], ["id"], ondelete="CASCADE")
        else:
            with op.batch_alter_table(table, naming_convention=NAMING, recreate="always") as batch_op:
                batch_op.create_foreign_key(f"fk_{table}_account_id_vpp_account", "vpp_account", ["account_id"], ["id"], ondelete="CASCADE")
