"""Torch / Lightning twins of the text's models; tests prove they agree with `dlrepro.scratch`."""
