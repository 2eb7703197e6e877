"""Synthetic planted-shortcut face data: known answers that test the audit itself."""
