"""``mdm demo``: the whole flow against the local simulator. It drives the VPP and the
mobile_apps plugins through their commands and hooks, so it belongs to neither."""
