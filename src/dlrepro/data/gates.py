"""The logic-gate truth tables the text trains on, written as CSV by the `prepare` stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np

INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
TRUTH = {
    "AND": [0, 0, 0, 1],
    "OR": [0, 1, 1, 1],
    "NAND": [1, 1, 1, 0],
    "NOR": [1, 0, 0, 0],
    "XOR": [0, 1, 1, 0],
    "XNOR": [1, 0, 0, 1],
}


def gate_path(root: str | Path, gate: str) -> Path:
    return Path(root) / f"{gate.lower()}.csv"


def write_gates(root: str | Path, gates: list[str]) -> list[Path]:
    """One CSV per gate: columns x1, x2, y, rows in the text's order."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for gate in gates:
        rows = ["x1,x2,y"] + [f"{a},{b},{t}" for (a, b), t in zip(INPUTS, TRUTH[gate], strict=True)]
        path = gate_path(root, gate)
        path.write_text("\n".join(rows) + "\n")
        paths.append(path)
    return paths


def read_gate(root: str | Path, gate: str) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) as integer arrays, the way the text builds them with np.array."""
    table = np.loadtxt(gate_path(root, gate), delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    return table[:, :2], table[:, 2]
