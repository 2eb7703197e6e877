"""The study report: every model x background partition side by side on one HTML page."""
