"""Licence ids (SPDX, the Hub's custom ids, publishers' statements) and the one
decision on a derivative's licence along its chain.
"""
