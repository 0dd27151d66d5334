"""The edge agent (edumlops.edge) and its conversation with the district server."""
