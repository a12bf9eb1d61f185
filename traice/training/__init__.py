"""Training the networks: data (volumes, windows, augmentation), recipes (settings, sources) and the loop."""
