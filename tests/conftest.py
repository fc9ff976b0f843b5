import os

# The verifier runs after every pipeline stage in tests (DESIGN.md section 3).
os.environ.setdefault("SCG_CHECKS", "1")
