"""Test support code that is not itself a test: stand-ins and helpers shared by tests and bench."""
