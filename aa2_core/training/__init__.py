"""Training the Animate Anyone 2 modules on your own videos."""
