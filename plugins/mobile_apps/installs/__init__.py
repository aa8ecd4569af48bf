"""Installing applications with VPP licenses.

- ``request``: ``mdm apps install`` (check, associate, wait, queue).
- ``reserve``: a request's licenses checked and its installs recorded before Apple is asked,
  one request at a time per asset.
- ``pending``: installs whose license Apple confirmed late, the ``mobile_apps.installs`` job,
  and auto-installs of licenses assigned outside this host.
- ``commands``: the ``InstallApplication`` command (queued once per device and app) and the
  install records.
"""
