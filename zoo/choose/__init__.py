"""Choosing among backbones without training them: `zoo rank` and the
transferability metrics (LogME, LEEP, NCE, H-score, k-NN accuracy).
"""
