"""Helpers for tests, benchmarks and local runs (never imported by the bid path)."""
