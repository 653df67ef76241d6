"""The pure core of Pushi: State (the router), sessions, channels, auth, settings."""
