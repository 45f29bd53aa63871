"""Training: features, the network, the Lightning module, the training run, evaluation."""
