"""The Dagster code location: Definitions, resources, jobs, schedules. Thin wiring only."""
