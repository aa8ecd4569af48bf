"""mobile_apps plugin hook implementations."""
