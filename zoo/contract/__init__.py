"""The contract between the core and its plugins: hook specifications, the records
and protocols plugins implement, errors and exit codes, the reference grammar, the
plugin manager and the checks of what plugins register. The bottom floor: it imports
no other room.
"""
