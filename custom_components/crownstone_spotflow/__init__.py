"""The Crownstone + Spotflow integration."""
