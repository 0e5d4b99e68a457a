"""The text's "MLP for XOR (No Libraries)": a 2-2-1 sigmoid network, as the text writes it.

Note what the code really does: it prints the mean squared error, but its update
`W += a.T · (error * sigmoid'(a)) * lr` with error = y - a2 is plain gradient descent on
½·Σ error² (the sum, not the mean, over the four rows).
"""

import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def sigmoid_derivative(x):
    return x * (1 - x)


def init_params(seed=1, input_size=2, hidden_size=2, output_size=1):
    """The text's initialisation: np.random.seed, then uniform [0, 1) weights, zero biases."""
    np.random.seed(seed)
    W1 = np.random.uniform(size=(input_size, hidden_size))
    b1 = np.zeros((1, hidden_size))
    W2 = np.random.uniform(size=(hidden_size, output_size))
    b2 = np.zeros((1, output_size))
    return W1, b1, W2, b2


def forward(X, W1, b1, W2, b2):
    a1 = sigmoid(np.dot(X, W1) + b1)
    a2 = sigmoid(np.dot(a1, W2) + b2)
    return a1, a2


def train(X, y, params, learning_rate=0.5, epochs=10000, log_every=1000, log=print):
    """The text's training loop; returns the final parameters and the loss at every epoch."""
    W1, b1, W2, b2 = (p.copy() for p in params)
    losses = np.empty(epochs)
    for epoch in range(epochs):
        # Forward pass
        a1, a2 = forward(X, W1, b1, W2, b2)

        # Compute error
        error = y - a2
        loss = np.mean(np.square(error))
        losses[epoch] = loss

        # Backpropagation
        d_output = error * sigmoid_derivative(a2)
        d_hidden = d_output.dot(W2.T) * sigmoid_derivative(a1)

        # Update weights and biases
        W2 += a1.T.dot(d_output) * learning_rate
        b2 += np.sum(d_output, axis=0, keepdims=True) * learning_rate
        W1 += X.T.dot(d_hidden) * learning_rate
        b1 += np.sum(d_hidden, axis=0, keepdims=True) * learning_rate

        # Print loss occasionally
        if epoch % log_every == 0:
            log(f"Epoch {epoch} - Loss: {loss:.4f}")
    return (W1, b1, W2, b2), losses


def loss_and_gradients(X, y, W1, b1, W2, b2):
    """½·Σ error² and its gradients: what the text's update descends, for other optimizers."""
    a1, a2 = forward(X, W1, b1, W2, b2)
    error = y - a2
    d_output = error * sigmoid_derivative(a2)
    d_hidden = d_output.dot(W2.T) * sigmoid_derivative(a1)
    grads = (
        -X.T.dot(d_hidden),
        -np.sum(d_hidden, axis=0, keepdims=True),
        -a1.T.dot(d_output),
        -np.sum(d_output, axis=0, keepdims=True),
    )
    return 0.5 * np.sum(np.square(error)), grads
