"""Training engine: configuration, budgets, checkpoints, training and testing loops."""
