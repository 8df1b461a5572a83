"""Video providers: fal.ai (fal.py) and a local ffmpeg renderer (local.py)."""
