"""Helpers of the web console's end-to-end tests (tests/e2e/test_web*.py)."""
