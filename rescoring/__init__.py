"""rescoring package."""
