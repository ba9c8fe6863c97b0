"""A user's handler package, shipped in an image built FROM workerpool."""
