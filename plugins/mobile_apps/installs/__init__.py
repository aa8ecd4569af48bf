"""Installing applications with VPP licenses.

- ``request``: ``mdm apps install`` (check, associate, wait, queue).
- ``pending``: installs whose license Apple confirmed late, the ``mobile_apps.installs`` job,
  and auto-installs of licenses assigned outside this host.
- ``commands``: the ``InstallApplication`` command (queued once per device and app) and the
  install records.
"""
