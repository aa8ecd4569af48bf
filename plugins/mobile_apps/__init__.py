"""The mobile_apps plugin: publishes VPP assets as installable applications."""
