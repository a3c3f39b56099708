"""The demo bundle, shipped as package data."""
