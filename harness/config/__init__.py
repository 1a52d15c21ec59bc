"""Configuration: matrix.yaml (releases × platforms × variants → cells) and the YAML reader."""
