"""Chapter 6, optimizers: the seven update rules in numpy, their torch.optim twins, the runner."""
