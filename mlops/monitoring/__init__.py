"""Monitoring: whylogs profiles, drift, constraints, live performance, retrain policy, log."""
