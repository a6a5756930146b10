"""Fake `modules` (the webui's own package) for tests."""
