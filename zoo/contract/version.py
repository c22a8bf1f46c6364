"""The release of zoo: recorded on every registered version (tag ``zoo.version``) and
in the pip requirements of a served model; zoo.__version__ is this."""

VERSION = "0.1.0"  # pyproject.toml [project] version
