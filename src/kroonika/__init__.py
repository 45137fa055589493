"""Kroonika: token identity manager with a tamper-evident security audit trail."""
