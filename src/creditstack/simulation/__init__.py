"""The synthetic economy: a seeded population of consumers, merchants, billers and partner banks that
drives the platform day by day through its services, and keeps the ground truth apart."""
