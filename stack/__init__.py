"""The local stack: the `mlops` CLI, the demo, replay, processes, Prefect client helpers."""
