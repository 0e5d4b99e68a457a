"""Rosenblatt's perceptron, exactly as the text writes it (step(0) = 1, zero init, lr 0.1)."""

import numpy as np


def step_function(x):
    return 1 if x >= 0 else 0


class Perceptron:
    def __init__(self, input_size, learning_rate=0.1):
        self.weights = np.zeros(input_size)
        self.bias = 0
        self.lr = learning_rate

    def predict(self, x):
        summation = np.dot(x, self.weights) + self.bias
        return step_function(summation)

    def train(self, X, y, epochs=10, log=print):
        """The text's loop; `log` receives its printed lines, and the weights after each sample
        are returned so that other implementations can be compared step by step."""
        history = []
        for epoch in range(epochs):
            log(f"\nEpoch {epoch + 1}")
            for i in range(len(X)):
                y_pred = self.predict(X[i])
                error = y[i] - y_pred
                self.weights += self.lr * error * X[i]
                self.bias += self.lr * error
                log(
                    f"Input: {X[i]}, Predicted: {y_pred}, Error: {error}, "
                    f"Weights: {self.weights}, Bias: {self.bias}"
                )
                history.append((epoch + 1, int(error), *self.weights, float(self.bias)))
        return np.array(history, dtype=np.float64)
