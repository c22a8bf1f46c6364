"""Keeping the zoo home: `zoo home du` (usage), `zoo home prune` (which pulled weights,
runs and staging a lineage, an import or an unfinished run still needs) and `zoo home
move` (the store's absolute artifact locations rewritten). Above the rooms whose files
it counts and removes.
"""
