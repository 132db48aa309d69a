"""Service functions: keyword-only, framework-free apart from the session; routes stay thin."""
