"""The bottom layer: what every other layer may import (user-error base class, environment settings).

Imports nothing of the project; ``storage``, ``core`` and the UI all build on it.
"""
