"""Test helpers shared by several test modules (no tests here): `reliability`, the bad-input harness."""
