"""Training: objectives (task = model + loss) and one readable loop."""
