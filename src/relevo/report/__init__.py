"""Results for people: the Summary Report as data (summary), then its renderers (table, as_json)."""
