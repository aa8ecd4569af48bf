"""The host's database: engine and sessions (``engine``), column types (``types``) and schema
migrations (``migrate``)."""

from mdm_core.db.engine import Database

__all__ = ["Database"]
