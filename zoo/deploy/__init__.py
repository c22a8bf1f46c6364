"""Deployment: the export pipeline (source -> verified file -> registered), its
gates, ONNX conversion and int8, and the predict path.
"""
