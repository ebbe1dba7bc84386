"""Fakes at the boundaries of external services, loaded as pytest plugins by tests/conftest.py (`pytest_plugins`).

Tests use their fixtures; no test imports another test module.
"""
