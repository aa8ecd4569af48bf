"""VPP plugin hook implementations."""
