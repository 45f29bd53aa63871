"""The data contract: its model, its YAML loader, the pandera schema and the API's request model."""
