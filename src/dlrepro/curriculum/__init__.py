"""One module per chapter of the text. Each runs the scratch (numpy) version and the framework
version, and returns a `ChapterResult` that the curriculum stage writes and logs."""

# Chapter name (module, stage `curriculum-<name>`, config key) -> its title in the report.
CHAPTERS = {
    "perceptron": "1. Perceptron",
    "mlp_xor": "2. Multi-layer perceptron for XOR",
    "backprop": "3. Forward and backward propagation",
    "activations": "4. Activation functions",
    "losses": "5. Loss functions",
    "optimizers": "6. Optimizers",
    "keras_xor": "7. Feed-forward network (the text's Keras example)",
}
