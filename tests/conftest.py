import os

# The verifier runs after every pipeline stage in tests (docs/design.md).
os.environ.setdefault("SCG_CHECKS", "1")
