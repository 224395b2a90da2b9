"""Suite-wide secret leak scan (placeholder: being written)."""
