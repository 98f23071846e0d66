"""Building blocks shared by every app: money, errors, base models, calendar helpers.

`core` imports no project app (an import-linter contract enforces it).
"""
