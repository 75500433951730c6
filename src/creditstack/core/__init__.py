"""The shared kernel: money, time, ids, errors, database plumbing, events, security and settings."""
