"""Reports that people open: self-contained Great Expectations Data Docs and the offline checks."""
