"""The VPP plugin: mirrors Apple Apps and Books (VPP) locations into ``vpp_*`` tables."""
