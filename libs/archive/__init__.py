"""The archive platform shared library."""
