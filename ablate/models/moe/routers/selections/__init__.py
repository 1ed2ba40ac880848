"""Selections: which experts each token goes to (one file per selection)."""
