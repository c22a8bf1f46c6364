"""The catalogue of backbones: references resolved through the providers, cached
indexes, a built backbone and its stages, and the models zoo composes from
backbones (several backbones as one, the multi-stage probe's head).
"""
