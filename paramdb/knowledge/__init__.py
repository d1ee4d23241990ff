"""Turning documents into weights and weights into answers: models, embedding, augmentation, LoRA."""
