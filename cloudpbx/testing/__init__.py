"""Support code for the test suites (not used by the running switch or API)."""
