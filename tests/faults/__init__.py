"""The fault suite: every fault class zoo promises to survive (docs/reliability.md)."""
