"""Data in: sources (files, folders, fsspec URLs), validation with quarantine, the simulator."""
