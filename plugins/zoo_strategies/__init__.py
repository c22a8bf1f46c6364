"""zoo strategy plugins: the core fine-tuning strategies (linear-probe, partial, full, ...)."""
