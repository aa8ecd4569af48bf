"""Alerts to admins by e-mail and webhooks: the model of a third-party plugin (see ``plugin.py``)."""
