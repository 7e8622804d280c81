"""The single source of the package version (read by setuptools and __init__)."""
__version__ = "0.1.0"
