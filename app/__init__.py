"""Tipbox: an anonymous tip-submission portal for newsrooms."""
