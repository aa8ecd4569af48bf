"""Alembic's environment, shared by every history: see ``mdm_core.db.migrate.run_env``."""

from alembic import context

from mdm_core.db.migrate import run_env

run_env(context)
