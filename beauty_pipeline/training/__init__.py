"""Model construction, the training loop, checkpoints and the decoded-image cache."""
