"""Where library files live: local disk (local.py) or an S3-compatible bucket (s3.py)."""
