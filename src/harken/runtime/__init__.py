"""Run-time machinery shared by the front doors: result cache (scheduler and metrics later)."""
