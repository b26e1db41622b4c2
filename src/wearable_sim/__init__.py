"""wearable_sim."""
