"""Spatio-temporal action detection: who does what, where and when.

Importing this package is cheap: torch is imported only by the modules that need it.
"""

__version__ = "0.1.0"
