"""The model registry: immutable versions, aliases changed by compare-and-swap, locks."""
