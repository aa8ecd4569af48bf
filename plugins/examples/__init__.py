"""Example plugins, enabled by module path in ``[plugins] enabled``."""
