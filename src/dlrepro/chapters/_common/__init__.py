"""What the chapters share: context (data, logging), result type, the toy Trainer."""
