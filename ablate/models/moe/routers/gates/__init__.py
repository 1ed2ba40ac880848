"""Gates: how much of each chosen expert's output a token takes (one file per gate)."""
