"""Launchers for the real infrastructure the tests, e2e and benchmarks use (not imported by services)."""
