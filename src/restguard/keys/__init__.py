"""Key material: hashing of checked secrets, sealing of recoverable ones, own signing keys."""
