"""Benchmarks: one script per claim; ``common`` holds what they share with the tests."""
