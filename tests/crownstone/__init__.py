"""Tests of the Crownstone cloud library."""
