"""Model specs: builtin, local Hugging Face directories, and user models from conftest."""
