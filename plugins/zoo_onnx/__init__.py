"""zoo exporter plugin: ONNX export verified against PyTorch."""
