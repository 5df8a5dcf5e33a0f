"""Generated from proto/archive/v1 by tools/protogen.py; do not edit."""
