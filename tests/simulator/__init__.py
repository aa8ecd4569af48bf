"""Tests of the Apple Apps and Books simulator (plugins/vpp/simulator)."""
