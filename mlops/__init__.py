"""The domain library: contract, data, training, release, registry, monitoring, inference.

Pure Python: imports neither Prefect, BentoML nor the layers above it (stack, flows, tasks,
serving).
"""
