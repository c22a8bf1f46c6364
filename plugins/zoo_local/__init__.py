"""zoo provider plugin for checkpoints the user imported with `zoo import` (local:NAME)."""
