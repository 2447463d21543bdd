"""The embedded default: small local copies of every source in its published schema.

No hub is reachable from the machines that build and test this project, so each source's
sample is generated here (seeded, deterministic) with real media: PNG/JPEG images drawn with
PIL and H.264 mp4 videos encoded by the ffmpeg binary that ``imageio-ffmpeg`` ships. The
samples are laid out like the hub repositories they stand for, so the loader that reads them
is the one that reads the hub.
"""
