"""Provider implementations of the operation phases, one module per provider."""
