"""End-to-end black-box tests: the real ./relay, ./send and ./receive as subprocesses."""
